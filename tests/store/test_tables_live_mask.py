"""Byte-proportional re-ingest writes: drop = clear the live mask, then append.

A re-ingested series' rows are dropped (cleared in the table's live mask) and its new
rows appended; the bytes written must follow the rows changed, not the table, and the
live content must equal the rewrite path's (the kept rows written afresh, then the new
rows).  Bytes are counted on the fsspec file system: every file that is new or whose
content changed counts in full.
"""

from __future__ import annotations

import hashlib

import fsspec
import numpy as np
import pytest
import xarray as xr

from medpipe.store import tables

N_FEATURES = 8


def _rows(names: list[str], seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n = len(names)
    return xr.Dataset(
        {
            "features": (("sample", "feature"), rng.normal(size=(n, N_FEATURES))),
            "predicted": ("sample", rng.integers(-1, 2, size=n).astype(np.int8)),
        },
        coords={
            "sample": np.array(names, dtype=object),
            "series": ("sample", np.array([s.split("/")[0] for s in names], dtype=object)),
            "feature": np.array([f"f{i}" for i in range(N_FEATURES)], dtype=object),
        },
        attrs={"config_hash": "abc"},
    )


def _files(root: str) -> dict[str, tuple[int, str]]:
    fs = fsspec.filesystem("file")
    out = {}
    for path in fs.find(root):
        data = fs.cat_file(path)
        out[path] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def _written(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> int:
    return sum(size for p, (size, h) in after.items() if before.get(p, (0, None))[1] != h)


def _reingest(store: str, path: str, names: list[str], seed: int) -> None:
    assert tables.drop_samples(store, path, names) == len(names)
    tables.append_samples(_rows(names, seed), store=store, path=path)


def _equal(a: xr.Dataset, b: xr.Dataset) -> None:
    assert list(tables.string_values(a["sample"])) == list(tables.string_values(b["sample"]))
    assert list(tables.string_values(a["series"])) == list(tables.string_values(b["series"]))
    np.testing.assert_array_equal(a["features"].values, b["features"].values)
    np.testing.assert_array_equal(a["predicted"].values, b["predicted"].values)
    assert set(a.variables) == set(b.variables)


@pytest.mark.parametrize(
    ("dead", "total", "expected"),
    [(0, 100, False), (20, 100, False), (21, 100, True), (5, 5, True), (0, 0, False)],
)
def test_needs_compaction(dead: int, total: int, expected: bool) -> None:
    assert tables.needs_compaction(dead, total) is expected


def test_reingesting_1_percent_writes_under_3_percent_and_equals_the_rewrite(tmp_path) -> None:
    n = 100_000
    names = [f"s{i:06d}/roi" for i in range(n)]
    store, path = str(tmp_path / "store.zarr"), "features/abc"
    tables.write_table(_rows(names, 0), store=store, path=path, rows=1024)
    before = _files(store)
    table_bytes = sum(size for size, _ in before.values())
    changed = names[7::100]  # 1 % of the rows, spread over every chunk
    _reingest(store, path, changed, seed=1)
    written = _written(before, _files(store))
    assert written <= 0.03 * table_bytes, (written, table_bytes)

    # The rewrite path: the kept rows written afresh, then the new rows appended.
    ref = str(tmp_path / "ref.zarr")
    gone = set(changed)
    kept = [s for s in names if s not in gone]
    full = _rows(names, 0)
    tables.write_table(full.sel(sample=kept), store=ref, path=path, rows=1024)
    tables.append_samples(_rows(changed, 1), store=ref, path=path)
    _equal(tables.open_table(store, path).load(), tables.open_table(ref, path).load())


def test_dead_rows_over_a_fifth_compact_the_table(tmp_path) -> None:
    names = [f"s{i:04d}/roi" for i in range(1000)]
    store, path = str(tmp_path / "store.zarr"), "scores/m/1"
    tables.write_table(_rows(names, 0), store=store, path=path, rows=64)
    expected = _rows(names, 0)
    for round_, batch in enumerate([names[0:150], names[500:600]], start=1):
        _reingest(store, path, batch, seed=round_)
        new = _rows(batch, round_)
        expected = xr.concat(
            [expected.sel(sample=[s for s in expected["sample"].values if s not in batch]), new],
            dim="sample",
        )
        _equal(tables.open_table(store, path).load(), expected)
    # 150 dead rows of 1,150 stored (13 %), then 100 more (22 %): the second drop compacts.
    stored = xr.open_zarr(store + "/" + path, consolidated=False)
    assert tables.LIVE not in stored.variables
    assert stored.sizes["sample"] == 900 + 100  # compacted, then the new rows appended
    _reingest(store, path, names[900:905], seed=9)
    assert tables.compact_table(store, path) == 5
    assert xr.open_zarr(store + "/" + path, consolidated=False).sizes["sample"] == 1000
    assert tables.compact_table(store, path) == 0


def test_a_dropped_sample_name_can_come_back_and_be_dropped_again(tmp_path) -> None:
    names = [f"s{i:03d}/roi" for i in range(200)]
    store, path = str(tmp_path / "store.zarr"), "features/x"
    tables.write_table(_rows(names, 0), store=store, path=path, rows=32)
    for seed in (1, 2, 3):
        _reingest(store, path, ["s010/roi"], seed=seed)
    table = tables.open_table(store, path).load()
    assert table.sizes["sample"] == 200
    got = table.sel(sample="s010/roi")["features"].values
    np.testing.assert_array_equal(got, _rows(["s010/roi"], 3)["features"].values[0])
    stored = xr.open_zarr(store + "/" + path, consolidated=False)
    assert int(stored[tables.LIVE].values.sum()) == 200
