"""A tiny MedMNIST-style npz cut from real images that pydicom bundles, and stores built
from it.  The labels are synthetic (bright vs dark patch): fine for plumbing, not for
judging accuracy — accuracy is checked on the shared MedMNIST data only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SECRET = b"test-secret"


def real_patches(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 patches of pydicom's real MR and CT slices, label = brighter half."""
    import pydicom
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(seed)
    slices = []
    for name in ("MR_small.dcm", "CT_small.dcm"):
        a = pydicom.dcmread(get_testdata_file(name)).pixel_array.astype(float)
        slices.append((a - a.min()) / (a.max() - a.min()) * 255)
    out = np.empty((n, 28, 28), np.uint8)
    for i in range(n):
        a = slices[i % 2]
        r, c = rng.integers(0, a.shape[0] - 28, 2)
        p = a[r : r + 28, c : c + 28]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        out[i] = np.clip(p, 0, 255).astype(np.uint8)
    means = out.reshape(n, -1).mean(axis=1)
    labels = (means > np.median(means)).astype(np.uint8)
    return out, labels


def write_npz(path: Path, *, n_train: int = 48, n_val: int = 24, seed: int = 0) -> Path:
    xt, yt = real_patches(n_train, seed=seed)
    xv, yv = real_patches(n_val, seed=seed + 1)
    np.savez(path, train_images=xt, train_labels=yt[:, None], val_images=xv,
             val_labels=yv[:, None])
    return path


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("npz") / "tinymnist.npz")


@pytest.fixture(scope="session")
def grouped_store(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> dict:
    """Archive with 3 images per patient, ingested, with a small feature table."""
    from medpipe import ingest
    from medpipe.features import FeatureConfig
    from medpipe.features.dataset import feature_table, features_group, write_features
    from medpipe.sample import build_medmnist_archive

    root = tmp_path_factory.mktemp("grouped")
    archive = build_medmnist_archive(tiny_npz, root / "archive", name="breastmnist",
                                     images_per_patient=3)
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    cfg = FeatureConfig(families=("pixels", "histogram", "firstorder"), pixels_size=14)
    group = features_group(cfg)
    write_features(feature_table(store, config=cfg), store=store, path=group)
    return {"archive": archive, "store": store, "features": group, "config": cfg}
