"""Atomic writes: temporary sibling, then move into place; removal and clean-up.

Every write goes to a hidden sibling ``<parent>/.tmp-<name>-<uuid>`` and is moved into
place once complete; a replaced group is moved aside first and deleted afterwards, so
the target is never half written.  On a local file system the moves are ``os.rename``
(atomic).

Object stores (``s3://`` …) have no rename, so there the commit is **write, then
publish**:

1. the group is written under the hidden temporary prefix (its ``zarr.json`` says
   ``"complete": false``);
2. an old group at the target is unpublished first (its ``complete`` marker cleared,
   then its root ``zarr.json`` deleted) and then deleted;
3. the temporary objects are copied server-side (``CopyObject``, no data through the
   client) to the target, the group's root ``zarr.json`` **last**: until it lands no
   group exists at the target (``has_group`` is false, zarr cannot open it);
4. for a series, :func:`medpipe.store.write_image` then sets ``"complete": true`` — the
   publish marker that :func:`medpipe.store.exists`, ``open_image`` and every pending
   set trust;
5. the temporary prefix is deleted.

A crash anywhere before step 4 leaves either nothing, a temporary prefix (removed by
:func:`clean_temporaries`), or a group whose marker is false: never a series that reads
as done; the next run rewrites it.  The cost is one server-side copy of each object.
A single file (:func:`atomic_write`: catalog and outputs parts, model files) is one
``PUT``, which S3 makes visible whole or not at all, so it is written in place.
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


def _copy_published_last(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    """Copy every object under ``tmp`` to ``target``, the root ``zarr.json`` last."""
    fs.invalidate_cache(tmp)
    files = sorted(fs.find(tmp))
    if not files:
        raise StoreError(f"nothing was written at {tmp}")
    root_meta = posixpath.join(tmp, "zarr.json")
    # the root group metadata publishes the group: copied after everything else
    for src in [f for f in files if f != root_meta] + [f for f in files if f == root_meta]:
        fs.copy(src, posixpath.join(target, posixpath.relpath(src, tmp)))
    fs.invalidate_cache(target)


def _replace_remote(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    # object stores have no rename: unpublish and delete the old group, then copy the
    # new one in with its root zarr.json last (see the module docstring)
    _unpublish_remote(fs, target)
    _copy_published_last(fs, tmp, target)
    fs.rm(tmp, recursive=True)


def _unpublish_remote(fs: fsspec.AbstractFileSystem, target: str) -> None:
    """Clear the marker of the group at ``target``, drop its ``zarr.json``, delete it."""
    fs.invalidate_cache(target)
    if not fs.exists(target):
        return
    meta = posixpath.join(target, "zarr.json")
    if read_group_json(fs, target) is not None:
        set_complete(fs, target, False)
        fs.rm(meta)
    fs.rm(target, recursive=True)
    fs.invalidate_cache(target)


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
    """Write one file of the store atomically (locally via a temporary sibling).

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
    if not is_local(fs):
        # one PUT: an object store shows the object whole or not at all
        fs.pipe_file(full, data)
        return path
    tmp = temporary_sibling(full)
    try:
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, full)
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
        _unpublish_remote(fs, target)


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
