"""Atomic file writes (temp then move) and atomic groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from medpipe import catalog
from medpipe import store as S


def test_atomic_write_replaces_or_keeps(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    assert S.atomic_write(store, "labels/x.parquet", b"one") == "labels/x.parquet"
    target = tmp_path / "s" / "labels" / "x.parquet"
    assert target.read_bytes() == b"one"
    S.atomic_write(store, "labels/x.parquet", b"two", overwrite=False)
    assert target.read_bytes() == b"one"
    S.atomic_write(store, "labels/x.parquet", b"three")
    assert target.read_bytes() == b"three"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.parquet"]


def test_atomic_write_on_fsspec_memory() -> None:
    url = "memory://medpipe-atomic"
    S.atomic_write(url, "catalog/part-a.parquet", b"abc")
    fs, root = S.store_root(url)
    assert fs.cat_file(f"{root}/catalog/part-a.parquet") == b"abc"
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/catalog", detail=False)] == [
        "part-a.parquet"
    ]


def test_failed_atomic_group_leaves_nothing(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    with pytest.raises(RuntimeError), S.atomic_group(store, "models/m/v1") as tmp:
        Path(tmp).mkdir(parents=True)
        (Path(tmp) / "model.json").write_text("{}")
        raise RuntimeError("crash")
    assert [p.name for p in (tmp_path / "s" / "models" / "m").iterdir()] == ["zarr.json"]


def test_catalog_ignores_a_crashed_writers_temporary(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    catalog.append(store, [{"path": "a.dcm", "status": "ingested"}], run_id="r1")
    parts = sorted((tmp_path / "s" / "catalog").iterdir())
    assert len(parts) == 1 and parts[0].name.startswith("part-r1-")
    # a crash between write and move leaves a hidden temporary, never read as a part
    (tmp_path / "s" / "catalog" / f".tmp-{parts[0].name}-dead").write_bytes(b"garbage")
    assert list(catalog.read_catalog(store)["path"]) == ["a.dcm"]
