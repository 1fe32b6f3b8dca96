"""Atomic writes: temporary sibling, then move into place; removal and clean-up.

Every write goes to a hidden sibling ``<parent>/.tmp-<name>-<uuid>`` and is moved into
place once complete; a replaced group is moved aside first and deleted afterwards, so
the target is never half written.  On a local file system the moves are ``os.rename``
(atomic).  On object stores (``s3://`` …) fsspec's ``mv`` is a copy followed by a delete,
which is not atomic: there the ``"complete": true`` marker of a series is written
*after* the copy and removed *before* an old series is deleted, and
:func:`medpipe.store.exists` (and everything that opens a series) trusts only that
marker.  Temporaries left by crashed writers are removed by :func:`clean_temporaries`.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Iterator

import fsspec

from medpipe.errors import StoreError
from medpipe.store.fs import (
    TMP_PREFIX,
    ensure_parent_groups,
    is_local,
    join,
    read_group_json,
    store_root,
    url_of,
    write_group_json,
)

__all__ = [
    "atomic_group",
    "atomic_write",
    "temporary_sibling",
    "set_complete",
    "replace",
    "remove",
    "clean_temporaries",
]


def temporary_sibling(target: str, *, tag: str = "") -> str:
    """A fresh hidden name beside ``target``: ``<parent>/.tmp-<tag><name>-<uuid>``."""
    parent, name = posixpath.split(target.rstrip("/"))
    return posixpath.join(parent, f"{TMP_PREFIX}{tag}{name}-{uuid.uuid4().hex}")


def set_complete(fs: fsspec.AbstractFileSystem, full: str, value: bool) -> None:
    """Set (or clear) the ``medpipe.complete`` marker of the group at ``full``.

    Raises
    ------
    StoreError
        No group metadata at ``full``.
    """
    meta = read_group_json(fs, full)
    if meta is None:
        raise StoreError(f"no group metadata at {full}")
    attrs = meta.get("attributes", {})
    attrs.setdefault("medpipe", {})["complete"] = value
    write_group_json(fs, full, attrs)


def _replace_local(tmp: str, target: str) -> None:
    old = None
    if os.path.lexists(target):
        old = temporary_sibling(target, tag="old-")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _replace_remote(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    # object stores: mv is copy + delete.  Unmark the old series first so that a crash
    # while it is deleted never leaves a complete-looking mixture behind.
    if fs.exists(target):
        if read_group_json(fs, target) is not None:
            set_complete(fs, target, False)
        fs.rm(target, recursive=True)
    fs.mv(tmp, target, recursive=True)


def replace(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing what was there."""
    if is_local(fs):
        _replace_local(tmp, target)
    else:
        _replace_remote(fs, tmp, target)


def _discard(fs: fsspec.AbstractFileSystem, tmp: str) -> None:
    # clean-up is best effort; clean_temporaries retries
    with contextlib.suppress(Exception):
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)


@contextlib.contextmanager
def atomic_group(store: str, path: str, *, overwrite: bool = True) -> Iterator[str]:
    """Write a whole group at a temporary sibling, then move it into ``path``.

    For writers other than :func:`medpipe.store.write_image` (an xarray
    ``Dataset.to_zarr``, a model folder…).  Nothing is visible at ``path`` until the
    block finishes without error; an existing group is replaced only then.

    Parameters
    ----------
    store
        Store URL or path.
    path
        Group path inside the store.
    overwrite
        When false, an existing group at ``path`` is never replaced: the block's group
        is discarded and :class:`~medpipe.errors.StoreError` raised (hold the store
        lock so that the check and the move are one step for every writer).

    Yields
    ------
    str
        The temporary location (a URL or local path) to write the group to.

    Raises
    ------
    StoreError
        ``overwrite`` is false and ``path`` exists already.
    """
    fs, root = store_root(store)
    target = join(root, path)
    tmp = temporary_sibling(target)
    ensure_parent_groups(fs, root, path)
    try:
        yield url_of(fs, tmp)
        if not overwrite and fs.exists(target):
            raise StoreError(f"{path} exists already; not replacing it")
        replace(fs, tmp, target)
    except BaseException:
        _discard(fs, tmp)
        raise


def atomic_write(store: str, path: str, data: bytes, *, overwrite: bool = True) -> str:
    """Write one file of the store: to a temporary sibling first, then moved into place.

    Parameters
    ----------
    store
        Store URL or path.
    path
        File path inside the store (its folder is created).
    data
        The file's bytes.
    overwrite
        When false and the file exists already, nothing is written.

    Returns
    -------
    str
        ``path``.
    """
    fs, root = store_root(store)
    full = join(root, path)
    if not overwrite and fs.exists(full):
        return path
    fs.makedirs(posixpath.dirname(full), exist_ok=True)
    tmp = temporary_sibling(full)
    try:
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        if is_local(fs):
            os.replace(tmp, full)
        else:
            fs.mv(tmp, full)
    except BaseException:
        _discard(fs, tmp)
        raise
    return path


def remove(store: str, path: str) -> None:
    """Delete a series (no error when it is absent).

    Locally the group is first renamed to a temporary name, so it disappears at once.
    """
    fs, root = store_root(store)
    target = join(root, path)
    if not fs.exists(target):
        return
    if is_local(fs):
        doomed = temporary_sibling(target, tag="del-")
        os.rename(target, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        if read_group_json(fs, target) is not None:
            set_complete(fs, target, False)
        fs.rm(target, recursive=True)


def clean_temporaries(store: str, parent: str, *, min_age_s: float = 0.0) -> list[str]:
    """Delete the ``.tmp-*`` leftovers of crashed or interrupted writes under ``parent``.

    Call it when no writer is running (e.g. at the start of a run under the store lock),
    or pass ``min_age_s`` larger than the longest write.

    Parameters
    ----------
    store
        Store root.
    parent
        Folder whose temporaries are cleaned, e.g. ``"images"``.
    min_age_s
        Only remove temporaries whose modification time is at least this old (where the
        file system reports one).

    Returns
    -------
    list of str
        Names removed.
    """
    fs, root = store_root(store)
    full = join(root, parent)
    try:
        entries = fs.ls(full, detail=True)
    except (FileNotFoundError, OSError):
        return []
    now = time.time()
    removed = []
    for e in entries:
        name = posixpath.basename(e["name"].rstrip("/"))
        if not name.startswith(TMP_PREFIX):
            continue
        mtime = e.get("mtime") or e.get("created")
        if min_age_s > 0 and isinstance(mtime, (int, float)) and now - mtime < min_age_s:
            continue
        fs.rm(e["name"], recursive=True)
        removed.append(name)
    return sorted(removed)
