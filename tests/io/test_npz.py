"""MedMNIST-style npz reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import skimage.data
from pydicom.data import get_testdata_file
from skimage.transform import resize

from medpipe.errors import InvalidSourceError
from medpipe.io.npz import npz_labels, probe_npz, read_npz


def _mr_28() -> np.ndarray:
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(float)
    small = resize(mr, (28, 28), anti_aliasing=True)
    return np.rint(255 * (small - small.min()) / np.ptp(small)).astype(np.uint8)


@pytest.fixture
def tiny_npz(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    base = _mr_28()
    images = np.stack([base, base.T, base[::-1], 255 - base, base[:, ::-1]])
    labels = np.array([[0], [1], [1], [0], [1]], dtype=np.uint8)
    np.savez(
        tmp_path / "mini.npz",
        train_images=images[:3],
        train_labels=labels[:3],
        val_images=images[3:],
        val_labels=labels[3:],
    )
    return tmp_path, images, labels


def test_tiny_npz(tiny_npz) -> None:
    root, images, labels = tiny_npz
    p = probe_npz(root, "mini.npz")
    assert (p.kind, p.group) == ("npz", "mini.npz")
    assert p.detail["counts"] == {"train": 3, "val": 2}
    series = read_npz(root, ["mini.npz"])
    assert [s.uid for s in series] == [
        "mini.npz#train/0",
        "mini.npz#train/1",
        "mini.npz#train/2",
        "mini.npz#val/0",
        "mini.npz#val/1",
    ]
    for s, img, lab in zip(series, images, labels, strict=True):
        assert s.axes == ("z", "y", "x") and s.data.shape == (1, 28, 28)
        np.testing.assert_array_equal(s.data[0], img)
        assert s.header["label"] == int(lab[0]) and s.modality == "OT"
        assert s.sources == ["mini.npz"]
    table = npz_labels(root, "mini.npz")
    assert list(table.columns) == ["uid", "split", "label"]
    assert table["uid"].tolist() == [s.uid for s in series]
    assert table["label"].tolist() == labels[:, 0].tolist()


def test_colour_npz(tmp_path: Path) -> None:
    astro = resize(skimage.data.astronaut(), (28, 28), preserve_range=True).astype(np.uint8)
    np.savez(tmp_path / "c.npz", test_images=astro[None], test_labels=np.array([[3]]))
    (s,) = read_npz(tmp_path, ["c.npz"])
    assert s.axes == ("c", "y", "x") and s.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(s.data, np.moveaxis(astro, -1, 0))
    assert s.header == {"split": "test", "index": 0, "spacing_source": "default", "label": 3}


def test_invalid_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    np.savez(
        tmp_path / "mismatch.npz",
        train_images=np.zeros((2, 28, 28), np.uint8),
        train_labels=np.zeros((3, 1)),
    )
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 nope")
    for name in ("nolabels.npz", "other.npz", "mismatch.npz", "junk.npz", "missing.npz"):
        with pytest.raises(InvalidSourceError):
            probe_npz(tmp_path, name)
        with pytest.raises(InvalidSourceError):
            read_npz(tmp_path, [name])


def test_breastmnist(shared_data: Path) -> None:
    root = shared_data / "labeled"
    rel = "breastmnist_trainval.npz"
    p = probe_npz(root, rel)
    assert p.detail["counts"] == {"train": 546, "val": 78}  # published split sizes
    series = read_npz(root, [rel])
    assert len(series) == 546 + 78
    with np.load(root / rel) as ref:
        np.testing.assert_array_equal(series[0].data[0], ref["train_images"][0])
        np.testing.assert_array_equal(series[546].data[0], ref["val_images"][0])
        expected = np.concatenate([ref["train_labels"].reshape(-1), ref["val_labels"].reshape(-1)])
    assert all(s.data.shape == (1, 28, 28) and s.data.dtype == np.uint8 for s in series)
    table = npz_labels(root, rel)
    assert table["label"].tolist() == expected.tolist()
    assert set(table["label"]) == {0, 1}
    assert [s.header["label"] for s in series] == expected.tolist()
    assert table["uid"].tolist() == [s.uid for s in series]
