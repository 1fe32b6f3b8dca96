"""Catalog: stat-only scans, diffs and append-only parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medpipe import catalog


def _tree(root: Path, n: int = 5) -> None:
    for i in range(n):
        sub = root / f"p{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.dcm").write_bytes(os.urandom(100 + i))
    (root / ".hidden").write_text("ignored")


def _rows(files: list[catalog.FileStat], status: str = "ingested") -> list[dict]:
    return [{**vars(f), "status": status, "series": "k"} for f in files]


def test_scan_is_sorted_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    files = catalog.scan(tmp_path)
    assert [f.path for f in files] == sorted(f.path for f in files)
    assert all(not f.path.startswith(".") for f in files)
    assert {f.size for f in files} == {100, 101, 102, 103, 104}
    assert len(catalog.scan(tmp_path, limit=2)) == 2


def test_diff_new_unchanged_changed_missing(tmp_path: Path) -> None:
    archive, store = tmp_path / "a", str(tmp_path / "s")
    _tree(archive)
    files = catalog.scan(archive)
    first = catalog.diff(files, catalog.current(store))
    assert len(first.new) == 5 and first.unchanged == 0
    assert catalog.append(store, _rows(files), run_id="r1") == 5

    cur = catalog.current(store)
    assert catalog.diff(catalog.scan(archive), cur).todo == []

    touched = archive / "p0" / "f0.dcm"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    (archive / "p1" / "f1.dcm").unlink()
    d = catalog.diff(catalog.scan(archive), cur)
    assert [f.path for f in d.changed] == ["p0/f0.dcm"]
    assert d.missing == ["p1/f1.dcm"] and d.unchanged == 3


def test_newest_row_wins_and_parts_are_append_only(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    f = catalog.FileStat("x.dcm", 10, 1)
    catalog.append(store, _rows([f], "quarantined"), run_id="r1")
    catalog.append(store, _rows([f], "ingested"), run_id="r2")
    assert len(catalog.read_catalog(store)) == 2
    cur = catalog.current(store)
    assert cur.loc["x.dcm", "status"] == "ingested" and cur.loc["x.dcm", "run_id"] == "r2"
    assert catalog.append(store, [], run_id="r3") == 0
    assert len(list((tmp_path / "s" / "catalog").glob("*.parquet"))) == 2


def test_content_hash_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    p = tmp_path / "b"
    p.write_bytes(os.urandom(3 << 20))
    assert catalog.content_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_scan_rejects_missing_archive(tmp_path: Path) -> None:
    from medpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="not a directory"):
        catalog.scan(tmp_path / "nope")
