"""The table API: append without rewriting, drop + append = fresh write, spec'd strings."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from medpipe import store as S
from medpipe.errors import SeriesNotFoundError
from medpipe.features import FeatureConfig
from medpipe.features import dataset as fdata
from medpipe.store import tables

#: Zarr data types of a string array that have a Zarr v3 specification.
SPEC_STRING_TYPES = {"string"}


def _table(names: list[str], *, lazy: bool = False, kind: str = "O") -> xr.Dataset:
    n = len(names)
    codes = [sum(map(ord, s)) for s in names]
    values = np.array([[c % 97, c / 7] for c in codes], dtype=np.float64).reshape(n, 2)
    strings = {"O": lambda v: np.array(v, dtype=object), "U": np.array,
               "T": lambda v: np.array(v, dtype=np.dtypes.StringDType())}[kind]
    return xr.Dataset(
        {"features": (("sample", "feature"), da.from_array(values, chunks=1) if lazy else values),
         "predicted": ("sample", np.array([c % 3 - 1 for c in codes], dtype=np.int8))},
        coords={
            "sample": strings(names),
            "series": ("sample", strings([s.split("/")[0] for s in names])),
            "label": ("sample", np.where(np.array(codes, dtype=int) % 2, 1.0, np.nan)),
            "feature": strings(["f_a", "f_b"]),
        },
        attrs={"config_hash": "abc", "source": "images"},
    )


def _chunk_files(root: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "c" in p.relative_to(root).parts:
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, p.read_bytes())
    return out


def _string_arrays(group: Path) -> dict[str, object]:
    out = {}
    for meta in group.rglob("zarr.json"):
        m = json.loads(meta.read_text())
        if m.get("node_type") != "array":
            continue
        dtype = m["data_type"]
        name = dtype if isinstance(dtype, str) else dtype.get("name")
        if name not in ("float64", "float32", "int8", "int16", "int32", "int64", "uint8",
                        "uint16", "uint32", "uint64", "bool"):
            out[str(meta.parent.relative_to(group))] = name
    return out


def assert_spec_strings(group: Path) -> None:
    """Every non-numeric array of a stored table has a string type with a v3 spec."""
    found = _string_arrays(group)
    assert found, f"no string arrays under {group}"
    assert set(found.values()) <= SPEC_STRING_TYPES, found


@pytest.mark.parametrize("kind", ["O", "U", "T"])
def test_strings_are_spec_clean(tmp_path: Path, kind: str) -> None:
    store = str(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr's UnstableSpecificationWarning included
        tables.write_table(_table(["a/x", "b/x"], kind=kind), store=store, path="scores/m/v1")
        tables.append_samples(_table(["c/x"], kind=kind), store=store, path="scores/m/v1")
    assert_spec_strings(tmp_path / "s" / "scores" / "m" / "v1")
    got = tables.open_table(store, "scores/m/v1").load()
    assert [str(s) for s in got["sample"].values] == ["a/x", "b/x", "c/x"]


@pytest.mark.parametrize("first", [4, 3])
def test_append_does_not_rewrite_existing_chunks(tmp_path: Path, first: int) -> None:
    store, path = str(tmp_path / "s"), "features/t"
    names = [f"s{i}/r" for i in range(first + 3)]
    tables.write_table(_table(names[:first], lazy=True), store=store, path=path, rows=2)
    group = tmp_path / "s" / "features" / "t"
    before = _chunk_files(group)
    past = 1_000_000_000_000_000_000  # 2001: any rewrite would change it
    for rel in before:
        os.utime(group / rel, ns=(past, past))
    assert tables.append_samples(_table(names[first:], lazy=True), store=store, path=path) == 3
    after = _chunk_files(group)
    # chunks that held only existing rows (all of them when the table filled whole chunks;
    # all but the last, partial one otherwise) keep their bytes and were not touched
    full = first // 2
    for rel, (_, data) in before.items():
        parts = rel.split("/")
        if int(parts[parts.index("c") + 1]) < full:
            assert after[rel] == (past, data), rel
    assert len(after) > len(before)
    got = tables.open_table(store, path).load()
    ref = _table(names)
    xr.testing.assert_equal(got.drop_encoding(), ref.pipe(tables._spec_strings))
    assert got["features"].encoding["chunks"] == (2, 2)


def test_drop_then_append_equals_a_fresh_write(tmp_path: Path) -> None:
    names = [f"s{i}/r" for i in range(7)]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    tables.write_table(_table(names[:5]), store=a, path="features/t", rows=3)
    assert tables.drop_samples(a, "features/t", ["s1/r", "s3/r", "nope"]) == 2
    assert tables.drop_samples(a, "features/t", ["nope"]) == 0
    tables.append_samples(_table(["s5/r", "s6/r", "s1/r"]), store=a, path="features/t")
    want = ["s0/r", "s2/r", "s4/r", "s5/r", "s6/r", "s1/r"]
    tables.write_table(_table(want), store=b, path="features/t", rows=3)
    got, ref = (tables.open_table(s, "features/t").load() for s in (a, b))
    xr.testing.assert_identical(got, ref)
    assert [str(s) for s in got["sample"].values] == want
    ja, jb = (_string_arrays(Path(s) / "features" / "t") for s in (a, b))
    assert ja == jb
    for var in ("features", "sample", "series", "label", "predicted"):
        meta = [json.loads((Path(s) / "features" / "t" / var / "zarr.json").read_text())
                for s in (a, b)]
        assert meta[0] == meta[1], var


def test_append_creates_and_failed_append_changes_nothing(tmp_path: Path) -> None:
    store, path = str(tmp_path / "s"), "scores/m/v1"
    with pytest.raises(SeriesNotFoundError):
        tables.open_table(store, path)
    assert tables.append_samples(_table(["a"]), store=store, path=path) == 1
    assert tables.append_samples(_table([]), store=store, path=path) == 0
    ref = tables.open_table(store, path).load()

    def boom(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("worker lost")

    bad = _table(["b", "c"], lazy=True)
    failing = bad["features"].data.map_blocks(boom, dtype=float)
    bad = bad.assign(features=bad["features"].copy(data=failing))
    with pytest.raises(RuntimeError, match="worker lost"):
        tables.append_samples(bad, store=store, path=path)
    xr.testing.assert_identical(tables.open_table(store, path).load(), ref)


# ------------------------------------------------------------ feature tables through it


def _image(store: str, key: str, value: int, run: str) -> None:
    data = np.full((1, 28, 28), value, np.uint8)
    data[0, 5:20, 7:22] += 40
    S.write_image(data, store=store, path=f"images/{key}", axes="zyx", spacing=(1, 1, 1),
                  attrs={"ingest_run": run, "modality": "OT", "patient_key": f"p{key}"})


def _sorted(ds: xr.Dataset) -> xr.Dataset:
    return ds.sortby("sample").drop_encoding()


def test_update_features_appends_and_matches_a_full_computation(tmp_path: Path) -> None:
    cfg = FeatureConfig(families=("histogram", "firstorder"))
    store = str(tmp_path / "s")
    for i, key in enumerate(("k1", "k3", "k5")):
        _image(store, key, 10 * i, "r1")
    first = fdata.update_features(store, config=cfg)
    assert first["computed"] == 3 and first["kept"] == 0
    group = tmp_path / "s" / first["group"]

    _image(store, "k0", 50, "r2")  # new, sorts first
    _image(store, "k3", 90, "r2")  # re-ingested
    second = fdata.update_features(store, config=cfg)
    assert second["keys"] == ["k0", "k3"] and second["kept"] == 2
    got = fdata.open_features(store, first["group"]).load()
    # order as before the table API: the kept rows, then the new ones
    assert [str(s) for s in got["series"].values] == ["k1", "k5", "k0", "k3"]
    ref_store = str(tmp_path / "ref")
    shutil.copytree(store, ref_store)
    shutil.rmtree(Path(ref_store) / "features")
    fdata.update_features(ref_store, config=cfg)
    ref = fdata.open_features(ref_store, first["group"]).load()
    xr.testing.assert_identical(_sorted(got), _sorted(ref))
    assert_spec_strings(group)

    unchanged = _chunk_files(group)  # nothing to do: nothing computed or written
    assert fdata.update_features(store, config=cfg)["computed"] == 0
    assert _chunk_files(group) == unchanged

    _image(store, "k9", 70, "r3")  # only a new series: appended, no row dropped
    fourth = fdata.update_features(store, config=cfg)
    assert fourth["keys"] == ["k9"] and fourth["kept"] == 4
    got = fdata.open_features(store, first["group"]).load()
    assert [str(s) for s in got["series"].values] == ["k1", "k5", "k0", "k3", "k9"]
    _image(ref_store, "k9", 70, "r3")
    shutil.rmtree(Path(ref_store) / "features")
    fdata.update_features(ref_store, config=cfg)
    ref = fdata.open_features(ref_store, first["group"]).load()
    # the same values; the versions differ only by the write time of the two k9 images
    xr.testing.assert_identical(_sorted(got).drop_vars("version"),
                                _sorted(ref).drop_vars("version"))


def test_update_features_of_some_keys_leaves_the_other_stale_series(tmp_path: Path) -> None:
    """``keys=`` (what ``medpipe predict`` uses): only those series are computed; another
    stale series keeps its stored rows until a full update."""
    cfg = FeatureConfig(families=("firstorder",))
    store = str(tmp_path / "s")
    for i, key in enumerate(("k1", "k2")):
        _image(store, key, 10 * i, "r1")
    group = fdata.update_features(store, config=cfg)["group"]
    before = fdata.open_features(store, group).load()
    _image(store, "k1", 80, "r2")  # both re-ingested, one new series
    _image(store, "k2", 90, "r2")
    _image(store, "k3", 30, "r2")
    part = fdata.update_features(store, config=cfg, keys=["k2", "k3"])
    assert part["keys"] == ["k2", "k3"] and part["kept"] == 1
    got = fdata.open_features(store, group).load()
    assert sorted(str(s) for s in got["series"].values) == ["k1", "k2", "k3"]
    old_k1 = before.isel(sample=[str(s) == "k1" for s in before["series"].values])
    new_k1 = got.isel(sample=[str(s) == "k1" for s in got["series"].values])
    xr.testing.assert_identical(old_k1.drop_encoding(), new_k1.drop_encoding())  # not recomputed
    assert fdata.stale_series(store, config=cfg) == ["k1"]
    assert fdata.update_features(store, config=cfg)["keys"] == ["k1"]


def test_append_cut_short_by_a_crash_is_never_read_and_is_repaired(tmp_path: Path) -> None:
    """Rows an append wrote before a crash (no commit record yet) stay invisible; the next
    append cuts them off first, so the table equals a clean run's."""
    store = str(tmp_path / "s.zarr")
    old, lost, new = _table(["a/1", "b/1"]), _table(["c/1", "d/1", "e/1"]), _table(["f/1"])
    tables.write_table(old, store=store, path="features/t", rows=2)
    # what a process killed after to_zarr's append, before the commit record, leaves
    raw = tables._spec_strings(lost).drop_vars("feature")
    raw.attrs[tables.COMMITTED] = 2  # as append_samples writes them: not committed yet
    raw.to_zarr(Path(store) / "features" / "t", mode="a", append_dim="sample",
                consolidated=False, zarr_format=3)
    assert xr.open_zarr(Path(store) / "features" / "t", consolidated=False).sizes["sample"] == 5
    seen = tables.open_table(store, "features/t")
    assert tables.string_values(seen["sample"]).tolist() == ["a/1", "b/1"]
    tables.append_samples(new, store=store, path="features/t")
    got = tables.open_table(store, "features/t").load()
    ref_store = str(tmp_path / "ref.zarr")
    tables.write_table(xr.concat([old, new], dim="sample"), store=ref_store, path="t", rows=2)
    ref = tables.open_table(ref_store, "t").load()
    assert tables.string_values(got["sample"]).tolist() == ["a/1", "b/1", "f/1"]
    xr.testing.assert_equal(got, ref)
    raw_after = xr.open_zarr(Path(store) / "features" / "t", consolidated=False)
    assert raw_after.sizes["sample"] == 3  # the crashed rows are gone from disk too
