"""The store is plain Zarr v3: a second implementation (tensorstore's ``zarr3`` driver)
reads what medpipe wrote and gets what zarr-python and xarray read.

Images (level 0 of the OME-Zarr pyramid, and the labels) and feature tables are built
with medpipe's public functions from real data: pydicom's bundled CT and, where the
shared data is present, an IBSI sarcoma CT with its RTSTRUCT mask.

tensorstore 0.1.86 implements the core data types only; the strings of a table use the
``string`` extension data type (``vlen-utf8`` codec), so those arrays are decoded here
straight from their specification instead (zarr-extensions ``data-types/string`` and
``codecs/vlen-utf8``, the chunk files read from disk, not through zarr-python).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from medpipe import ingest, store
from medpipe.features import FeatureConfig
from medpipe.features.dataset import feature_table, features_group, write_features

ts = pytest.importorskip(
    "tensorstore", reason="tensorstore is not installed (pip install -e '.[dev]')"
)

SECRET = b"test-secret"
#: Data types with a Zarr v3 specification: the core ones, and the ``string`` extension.
CORE = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128"}
CONFIG = FeatureConfig(families=("firstorder", "glcm"), bin_width=25.0)


def _metadata(array_dir: Path) -> dict[str, Any]:
    return json.loads((array_dir / "zarr.json").read_text())


def _tensorstore_read(array_dir: Path) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(array_dir)}}
    return ts.open(spec, open=True, read=True).result().read().result()


def _chunk_file(array_dir: Path, meta: dict[str, Any], index: tuple[int, ...]) -> Path:
    enc = meta["chunk_key_encoding"]
    sep = enc.get("configuration", {}).get("separator", "/" if enc["name"] == "default" else ".")
    parts = [str(i) for i in index] or ["0"]
    key = sep.join(["c", *parts]) if enc["name"] == "default" else sep.join(parts)
    return array_dir / key


def _read_strings(array_dir: Path) -> np.ndarray:
    """A ``string`` array decoded from the spec: zstd, then vlen-utf8 (u32 count, then
    u32 length + UTF-8 bytes per element), chunks in the default chunk-key encoding."""
    import numcodecs

    meta = _metadata(array_dir)
    assert meta["data_type"] == "string", meta["data_type"]
    codecs = [c["name"] for c in meta["codecs"]]
    assert codecs[0] == "vlen-utf8" and set(codecs[1:]) <= {"zstd"}, codecs
    shape = tuple(meta["shape"])
    chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    out = np.full(shape, meta["fill_value"], dtype=object)
    for index in np.ndindex(*[-(-s // c) for s, c in zip(shape, chunks, strict=True)]):
        path = _chunk_file(array_dir, meta, index)
        if not path.exists():
            continue
        raw = path.read_bytes()
        if "zstd" in codecs:
            raw = numcodecs.Zstd().decode(raw)
        raw = bytes(raw)
        (n,), pos, items = struct.unpack_from("<I", raw), 4, []
        for _ in range(n):
            (length,) = struct.unpack_from("<I", raw, pos)
            items.append(raw[pos + 4 : pos + 4 + length].decode("utf-8"))
            pos += 4 + length
        block = np.array(items, dtype=object).reshape(chunks)
        sel = tuple(slice(i * c, min((i + 1) * c, s))
                    for i, c, s in zip(index, chunks, shape, strict=True))
        out[sel] = block[tuple(slice(0, s.stop - s.start) for s in sel)]
    return out


def _assert_table_readable(group_dir: Path) -> list[str]:
    """Every array of the table, read without zarr-python, equals what xarray reads."""
    ds = xr.open_zarr(group_dir, consolidated=False)
    names = sorted(p.parent.name for p in group_dir.glob("*/zarr.json"))
    assert set(names) == set(ds.variables), (names, sorted(ds.variables))
    for name in names:
        meta = _metadata(group_dir / name)
        assert meta["node_type"] == "array"
        dtype = meta["data_type"]  # a name, or {"name": ..., "configuration": ...}
        dtype = dtype if isinstance(dtype, str) else dtype["name"]
        assert dtype in CORE | {"string"}, f"{name}: {meta['data_type']}"
        expected = ds[name].values
        if dtype == "string":
            got = _read_strings(group_dir / name)
            assert got.tolist() == [str(v) for v in expected.tolist()], name
        else:
            got = _tensorstore_read(group_dir / name)
            assert got.dtype == expected.dtype, name
            np.testing.assert_array_equal(got, expected, err_msg=name)
    return names


def _assert_image_readable(out: str, group: str) -> None:
    """Level 0 and every label read by tensorstore equal zarr-python and open_image."""
    root = Path(out) / group
    level0 = _tensorstore_read(root / "0")
    z = zarr.open_array(root / "0", mode="r")
    assert level0.dtype == z.dtype and level0.shape == z.shape
    np.testing.assert_array_equal(level0, z[...])
    np.testing.assert_array_equal(level0, store.open_image(out, group).values)
    for roi, mask in store.open_labels(out, group).items():
        got = _tensorstore_read(root / "labels" / roi / "0")
        np.testing.assert_array_equal(got, zarr.open_array(root / "labels" / roi / "0")[...])
        np.testing.assert_array_equal(got, mask.values)


def _ingested(archive: Path, out: str) -> list[str]:
    summary = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert summary.quarantined == 0
    return store.list_groups(out, "images")


def _features(out: str) -> Path:
    path = write_features(feature_table(out, config=CONFIG), store=out,
                          path=features_group(CONFIG))
    return Path(out) / path


def test_bundled_ct_image_and_features(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), archive)
    out = str(tmp_path / "store.zarr")
    (group,) = _ingested(archive, out)
    _assert_image_readable(out, group)
    names = _assert_table_readable(_features(out))
    assert {"features", "sample", "feature", "series", "modality"} <= set(names)


@pytest.mark.slow
def test_ibsi_ct_with_mask(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom" / "ibsi_sts" / "STS_002" / "CT"
    archive = tmp_path / "archive"
    shutil.copytree(src, archive / "CT")
    out = str(tmp_path / "store.zarr")
    (group,) = _ingested(archive, out)
    labels = store.open_labels(out, group)
    assert len(labels) == 1 and next(iter(labels.values())).values.any()
    _assert_image_readable(out, group)
    table = _features(out)
    _assert_table_readable(table)
    assert xr.open_zarr(table, consolidated=False).sizes["sample"] == 1  # one GTV


@pytest.mark.slow
def test_score_table(tmp_path: Path) -> None:
    from medpipe.models.train import score_model, train_model
    from medpipe.sample import build_medmnist_archive
    from tests.models.conftest import write_npz

    npz = write_npz(tmp_path / "tiny.npz", n_train=24, n_val=8)
    archive = build_medmnist_archive(npz, tmp_path / "archive", name="breastmnist")
    out = str(tmp_path / "store.zarr")
    ingest.ingest_archive(str(archive), out, secret=SECRET)
    cfg = FeatureConfig(families=("firstorder",))
    group = write_features(feature_table(out, config=cfg), store=out, path=features_group(cfg))
    train_model(out, name="tiny", features=group, labels=archive / "labels.csv",
                secret=SECRET, estimator="logreg", n_splits=2, n_boot=10)
    res = score_model(out, model="tiny")
    names = _assert_table_readable(Path(out) / res["group"])
    assert {"probability", "predicted", "sample"} <= set(names)
