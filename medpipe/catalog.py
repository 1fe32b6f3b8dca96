"""The catalog: an append-only record of every source file medpipe has seen.

The catalog lives in the store at ``catalog/part-<run>-<n>.parquet``.  Parts are
never rewritten; the current state of a file is its newest row.  It has a single
writer (the flow, or the CLI process running it), which appends one part per
finished batch, so a crash loses at most the batches that had not finished.

Scanning is cheap by design: :func:`scan` only ``stat``\\s files, and :func:`diff`
decides from size and mtime which files are new or changed.  File contents are
read (hashed, probed, decoded) only for those.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from medpipe import store as _store
from medpipe.store import layout
from medpipe.store import parts as _log

__all__ = [
    "COLUMNS",
    "STATUSES",
    "FileStat",
    "Diff",
    "scan",
    "diff",
    "read_catalog",
    "current",
    "append",
    "content_hash",
    "new_run_id",
    "compact",
    "save_listing",
    "load_listing",
    "drop_listing",
]

#: Catalog columns, in order.
COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "meta",
    "sha256",
    "series",
    "kind",
    "role",
    "status",
    "reason",
    "run_id",
    "written_at",
)
#: Values of the ``status`` column.
STATUSES = ("ingested", "quarantined", "skipped", "missing")

_CATALOG = layout.CATALOG
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileStat:
    """A file found by :func:`scan`: relative POSIX path, size in bytes, mtime in ns.

    ``meta`` is the source's change signal where it has one (a DICOMweb instance's
    metadata hash, an object's ETag: :mod:`medpipe.sources`); :func:`diff` then compares
    it instead of size and mtime.
    """

    path: str
    size: int
    mtime_ns: int
    meta: str | None = None


@dataclass
class Diff:
    """What changed in the archive since the catalog's current state.

    Attributes
    ----------
    new, changed
        Files not in the catalog, and files whose size or mtime differ from it.
    unchanged
        Number of files whose size and mtime match (their contents are not read).
    missing
        Catalogued paths (not already marked missing) that are no longer in the archive.
    """

    new: list[FileStat] = field(default_factory=list)
    changed: list[FileStat] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[FileStat]:
        """New and changed files, in path order."""
        return sorted(self.new + self.changed, key=lambda f: f.path)


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _walk(root: str, prefix: str) -> Iterator[FileStat]:
    with os.scandir(root) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, rel + "/")
            elif entry.is_file():
                st = entry.stat()
                yield FileStat(rel, st.st_size, st.st_mtime_ns)


def scan(archive: str | os.PathLike[str], *, limit: int | None = None) -> list[FileStat]:
    """List every file under ``archive`` with its size and mtime, without reading it.

    Parameters
    ----------
    archive
        Local archive root.  Hidden files and folders (``.name``) are ignored.  A URL
        (``s3://…``, ``dicomweb+http://…``) is listed by its source
        (:func:`medpipe.sources.open_source`), reading no content either.
    limit
        Keep only the first ``limit`` files in path order (a cheap development run).

    Returns
    -------
    list of FileStat
        Sorted by path.
    """
    from medpipe import sources

    if sources.is_url(str(archive)):
        return sources.open_source(str(archive)).list(limit=limit)
    root = Path(archive)
    if not root.is_dir():
        from medpipe.errors import ConfigError

        raise ConfigError(f"archive {root} is not a directory")
    files = sorted(_walk(str(root), ""), key=lambda f: f.path)
    return files[:limit] if limit is not None else files


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _parts(store: str) -> list[str]:
    """The catalog files to read: its newest snapshot (see :func:`compact`), then parts."""
    fs, root = _store.store_root(store)
    return [f"{root}/{p}" for p in _log.live_files(store, _CATALOG)[0]]


def compact(store: str, *, owner: str, min_parts: int = 2) -> int:
    """Merge the catalog's parts into one snapshot part (every row kept, in order).

    Reading the catalog then opens one file instead of one per batch of every run ever.
    The snapshot is written atomically before the parts it replaces are deleted, and
    readers ignore the parts a snapshot names, so a crash at any point changes nothing
    :func:`read_catalog` returns.  Takes the store's write lock (the catalog's writer).

    Parameters
    ----------
    store
        Store URL or path.
    owner
        The run taking the lock.
    min_parts
        Only merge when a reader opens at least this many files.

    Returns
    -------
    int
        The number of files merged (0: nothing written).
    """
    with _store.store_lock(store, _store.WRITE_LOCK, owner=owner):
        files, listed = _log.live_files(store, _CATALOG)
        if len(files) < max(min_parts, 2):
            _log.clean_replaced(store, _CATALOG)  # what a compaction cut short left
            return 0
        rows = read_catalog(store)
        _log.write_snapshot(store, _CATALOG, rows.reset_index(drop=True), replaces=listed)
    return len(files)


def read_catalog(store: str) -> pd.DataFrame:
    """Every catalog row ever written, oldest first.

    Parameters
    ----------
    store
        Store URL or path.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; empty when nothing was catalogued yet.
    """
    fs, _ = _store.store_root(store)
    frames = []
    for part in _parts(store):
        with fs.open(part, "rb") as fh:
            frames.append(pd.read_parquet(fh))
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True).sort_values("written_at", kind="stable")


def current(store: str | pd.DataFrame) -> pd.DataFrame:
    """The newest row per path: the catalog's current view of the archive."""
    rows = read_catalog(store) if isinstance(store, str) else store
    if rows.empty:
        return rows
    return rows.drop_duplicates("path", keep="last").set_index("path", drop=False)


def diff(files: Sequence[FileStat], catalog: pd.DataFrame) -> Diff:
    """Compare a scan with the catalog's current view by size and mtime only.

    Parameters
    ----------
    files
        The result of :func:`scan`.  A file with a ``meta`` is compared by it alone.  A
        partial listing (:class:`medpipe.sources.Listing` with ``covers``) marks
        missing only the catalogued paths it covers.
    catalog
        The result of :func:`current`.

    Returns
    -------
    Diff
    """
    out = Diff()
    if catalog.empty:
        out.new = list(files)
        return out
    metas = [
        None if pd.isna(v) else str(v)
        for v in (catalog["meta"] if "meta" in catalog else [None] * len(catalog))
    ]
    known = {
        p: (s, m, st, mt)
        for p, s, m, st, mt in zip(
            catalog["path"],
            catalog["size"],
            catalog["mtime_ns"],
            catalog["status"],
            metas,
            strict=True,
        )
    }
    seen = set()
    for f in files:
        seen.add(f.path)
        prev = known.get(f.path)
        if prev is None or prev[2] == "missing":
            out.new.append(f)
        elif (f.meta is not None and f.meta != prev[3]) or (
            f.meta is None and (prev[0], prev[1]) != (f.size, f.mtime_ns)
        ):
            out.changed.append(f)
        else:
            out.unchanged += 1
    covers = getattr(files, "covers", None)
    out.missing = sorted(
        p
        for p, v in known.items()
        if p not in seen and v[2] != "missing" and (covers is None or covers(p))
    )
    return out


def append(store: str, rows: Iterable[Mapping[str, object]], *, run_id: str) -> int:
    """Append rows to the catalog as one new, atomically written Parquet part.

    Parameters
    ----------
    store
        Store URL or path.
    rows
        Mappings with (at least) ``path`` and ``status``; missing columns are empty.
    run_id
        The run writing the rows.

    Returns
    -------
    int
        The number of rows written (nothing is written for none).
    """
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return 0
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    frame["run_id"] = run_id
    frame["written_at"] = pd.Timestamp.now(tz="UTC")
    frame = _typed(frame[list(COLUMNS)])
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    name = f"part-{run_id}-{uuid.uuid4().hex[:8]}.parquet"
    _store.atomic_write(store, layout.catalog_part(name), buf.getvalue())
    return len(frame)


def save_listing(store: str, files: Sequence[FileStat], *, run_id: str) -> str:
    """Write an archive listing (from :func:`scan`) to the store, for another stage.

    The nightly run lists the archive once to plan, and hands this URI to ingest,
    which then does not list it again (a PACS's QIDO-RS queries, a bucket's listing).

    Parameters
    ----------
    store
        Store URL or path.
    files
        The listing.
    run_id
        The run it belongs to (:func:`drop_listing` removes it when the run is done).

    Returns
    -------
    str
        The listing's path inside the store (:func:`load_listing` reads it).
    """
    frame = pd.DataFrame(
        [vars(f) for f in files], columns=["path", "size", "mtime_ns", "meta"]
    ).astype({"path": "string", "size": "int64", "mtime_ns": "int64", "meta": "string"})
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return _store.atomic_write(store, layout.listing(run_id), buf.getvalue())


def load_listing(store: str, path: str) -> list[FileStat]:
    """The listing :func:`save_listing` wrote at ``path``, sorted by path.

    Raises
    ------
    StoreError
        No listing at ``path``.
    """
    from medpipe.errors import StoreError

    fs, root = _store.store_root(store)
    try:
        with fs.open(f"{root}/{path}", "rb") as fh:
            frame = pd.read_parquet(fh)
    except FileNotFoundError as err:
        raise StoreError(f"no archive listing {path!r} in store {store!r}") from err
    return sorted(
        (FileStat(str(r.path), int(r.size), int(r.mtime_ns),
                  None if pd.isna(r.meta) else str(r.meta))
         for r in frame.itertuples(index=False)),
        key=lambda f: f.path,
    )


def drop_listing(store: str, path: str) -> None:
    """Delete a listing written by :func:`save_listing` (no error when it is gone)."""
    fs, root = _store.store_root(store)
    if fs.exists(f"{root}/{path}"):
        fs.rm(f"{root}/{path}")


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    ints = {"size": "Int64", "mtime_ns": "Int64"}
    out = frame.astype(ints)
    for col in COLUMNS:
        if col not in ints and col != "written_at":
            out[col] = out[col].astype("string")
    return out


def _empty() -> pd.DataFrame:
    return _typed(
        pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS}).assign(
            written_at=pd.Series([], dtype="datetime64[ns, UTC]")
        )
    )
