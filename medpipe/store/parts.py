"""Append-only logs of Parquet parts with atomic snapshots (the outputs index, compaction).

A log is a folder of the store holding

* ``part-<run>-<uuid>.parquet`` files, each written once, atomically
  (:func:`medpipe.store.atomic_write`), never rewritten: :func:`append_part`;
* ``snapshot-<time>-<uuid>.parquet`` files: one frame standing for every part it names
  in its Parquet metadata (:data:`REPLACES`), written atomically before those parts are
  deleted: :func:`write_snapshot`.

:func:`read_log` reads the newest snapshot and the parts it does not name, so a crash
at any point of a compaction loses nothing and counts nothing twice: until the snapshot
file is complete it is not there (the parts are read); once it is, the parts it names
are ignored whether or not they were deleted yet.  Rows keep their order: the snapshot's
first, then the parts' in the order of their ``written_at`` column.

Writers of a log hold the store lock; part names are unique, so two writers appending at
once never overwrite each other, and a snapshot is only written under the lock.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medpipe.store.atomic import atomic_write
from medpipe.store.fs import join, store_root

__all__ = [
    "REPLACES",
    "PART_PREFIX",
    "SNAPSHOT_PREFIX",
    "list_log",
    "append_part",
    "write_snapshot",
    "read_log",
    "has_snapshot",
    "live_files",
    "clean_replaced",
]

#: Parquet metadata key of a snapshot: the JSON list of the part names it stands for.
REPLACES = b"medpipe.replaces"
#: File-name prefix of a part.
PART_PREFIX = "part-"
#: File-name prefix of a snapshot.
SNAPSHOT_PREFIX = "snapshot-"
_SUFFIX = ".parquet"


def list_log(store: str, folder: str) -> tuple[list[str], list[str]]:
    """The part and snapshot file names of the log at ``folder``, each sorted.

    Returns
    -------
    (list of str, list of str)
        Part names, snapshot names (temporaries of unfinished writes are left out).
    """
    fs, root = store_root(store)
    try:
        names = [posixpath.basename(p) for p in fs.ls(join(root, folder), detail=False)]
    except (FileNotFoundError, OSError):
        return [], []
    names = [n for n in names if n.endswith(_SUFFIX)]
    parts = sorted(n for n in names if n.startswith(PART_PREFIX))
    snaps = sorted(n for n in names if n.startswith(SNAPSHOT_PREFIX))
    return parts, snaps


def has_snapshot(store: str, folder: str) -> bool:
    """True when the log at ``folder`` has a snapshot."""
    return bool(list_log(store, folder)[1])


def live_files(store: str, folder: str) -> tuple[list[str], list[str]]:
    """The files a reader of the log reads: the newest snapshot, then the parts it does not name.

    Returns
    -------
    files : list of str
        Store-relative paths, the snapshot (if any) first, then parts in name order.
    listed : list of str
        Every part name listed (what a compaction made now would replace).
    """
    parts, snaps = list_log(store, folder)
    replaced: set[str] = set()
    files = []
    if snaps:
        files.append(posixpath.join(folder, snaps[-1]))
        replaced = set(_replaced(store, files[0]))
    files += [posixpath.join(folder, n) for n in parts if n not in replaced]
    return files, parts


def clean_replaced(store: str, folder: str) -> int:
    """Delete what the newest snapshot made obsolete (a compaction cut short left them).

    Returns
    -------
    int
        The number of files deleted.
    """
    parts, snaps = list_log(store, folder)
    if not snaps:
        return 0
    replaced = set(_replaced(store, posixpath.join(folder, snaps[-1])))
    doomed = [n for n in parts if n in replaced] + snaps[:-1]
    fs, root = store_root(store)
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(join(root, posixpath.join(folder, name)))
    return len(doomed)


def _replaced(store: str, path: str) -> list[str]:
    """The part names a snapshot stands for (its Parquet metadata only is read)."""
    fs, root = store_root(store)
    with fs.open(join(root, path), "rb") as fh:
        meta = pq.read_schema(fh).metadata or {}
    return list(json.loads(meta[REPLACES])) if REPLACES in meta else []


def _parquet(frame: pd.DataFrame, meta: dict[bytes, bytes] | None = None) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if meta:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def append_part(store: str, folder: str, frame: pd.DataFrame, *, run_id: str) -> str | None:
    """Write ``frame`` as a new part of the log (atomically); nothing for an empty frame.

    Returns
    -------
    str or None
        The part's path in the store, or ``None`` when nothing was written.
    """
    if frame.empty:
        return None
    name = f"{PART_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
    return atomic_write(store, posixpath.join(folder, name), _parquet(frame))


def write_snapshot(
    store: str, folder: str, frame: pd.DataFrame, *, replaces: Sequence[str]
) -> str:
    """Write a snapshot standing for ``replaces`` (part names), then delete those parts.

    The snapshot is complete and in place (an atomic write) before any part is deleted;
    older snapshots are deleted with them.  Hold the store lock: a part appended after
    ``replaces`` was listed is not in it, so it stays and is read after the snapshot.

    Parameters
    ----------
    store
        Store URL or path.
    folder
        The log's folder.
    frame
        The rows the snapshot holds (may be empty).
    replaces
        Names of the parts whose rows ``frame`` includes.

    Returns
    -------
    str
        The snapshot's path in the store.
    """
    _, older = list_log(store, folder)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{SNAPSHOT_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
    data = _parquet(frame, {REPLACES: json.dumps(sorted(replaces)).encode()})
    path = atomic_write(store, posixpath.join(folder, name), data)
    fs, root = store_root(store)
    for old in [*replaces, *older]:
        with contextlib.suppress(FileNotFoundError):  # best effort: readers ignore them
            fs.rm(join(root, posixpath.join(folder, old)))
    return path


def _read(store: str, path: str) -> tuple[pd.DataFrame, list[str]]:
    fs, root = store_root(store)
    with fs.open(join(root, path), "rb") as fh:
        table = pq.read_table(fh)
    meta = table.schema.metadata or {}
    replaced = json.loads(meta[REPLACES]) if REPLACES in meta else []
    return table.to_pandas(), list(replaced)


def read_log(store: str, folder: str) -> tuple[pd.DataFrame | None, list[pd.DataFrame], int]:
    """The newest snapshot of the log and the parts it does not stand for.

    Returns
    -------
    snapshot : pandas.DataFrame or None
        The newest snapshot's rows (``None``: the log has no snapshot).
    parts : list of pandas.DataFrame
        The rows of every part the snapshot does not name, in part-name order.
    n_parts : int
        How many parts were read.
    """
    for _ in range(3):
        try:
            return _read_once(store, folder)
        except FileNotFoundError:  # a compaction deleted a part since the listing: again
            continue
    return _read_once(store, folder)


def _read_once(store: str, folder: str) -> tuple[pd.DataFrame | None, list[pd.DataFrame], int]:
    parts, snaps = list_log(store, folder)
    snapshot, replaced = None, set()
    if snaps:
        snapshot, names = _read(store, posixpath.join(folder, snaps[-1]))
        replaced = set(names)
    frames = [
        _read(store, posixpath.join(folder, name))[0] for name in parts if name not in replaced
    ]
    return snapshot, frames, len(frames)
