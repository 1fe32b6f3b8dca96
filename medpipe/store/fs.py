"""fsspec plumbing: store URLs, paths, hand-written ``zarr.json`` group I/O and listings."""

from __future__ import annotations

import json
import math
import os
import posixpath
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem

from medpipe.errors import SeriesNotFoundError

__all__ = [
    "TMP_PREFIX",
    "store_root",
    "is_local",
    "join",
    "url_of",
    "zarr_store",
    "read_group_json",
    "write_group_json",
    "ensure_parent_groups",
    "jsonable",
    "read_attrs",
    "exists",
    "has_group",
    "subgroups",
    "list_groups",
]

#: Name prefix of every temporary (hidden) entry a writer makes.
TMP_PREFIX = ".tmp-"

#: Protocols whose listings are never stale (no listing cache to switch off).
_NO_LISTING_CACHE = frozenset({None, "file", "local", "memory"})


def store_root(store: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve a store URL to a file system and the root path on it.

    Parameters
    ----------
    store
        A local path (the default kind) or any fsspec URL (``s3://bucket/prefix``,
        ``memory://x`` …).  Credentials and endpoint come from the usual fsspec/boto
        configuration (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` …).

    Returns
    -------
    (fsspec.AbstractFileSystem, str)
        The file system and the root path without a trailing slash (absolute for
        local paths).
    """
    protocol, _ = fsspec.core.split_protocol(str(store))
    # object stores: no cached listings.  Dask workers and other processes write the
    # same store; a cached listing would hide their series (or show deleted ones).
    opts = {} if protocol in _NO_LISTING_CACHE else {"use_listings_cache": False}
    fs, root = fsspec.core.url_to_fs(str(store), **opts)
    if is_local(fs):
        root = os.path.abspath(root)
    return fs, root.rstrip("/") or "/"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local file system (where renames are atomic)."""
    return isinstance(fs, LocalFileSystem)


def join(root: str, path: str) -> str:
    """``root/path`` (``root`` itself for an empty path)."""
    path = path.strip("/")
    return posixpath.join(root, path) if path else root


def url_of(fs: fsspec.AbstractFileSystem, full: str) -> str:
    """A location on ``fs`` as something xarray/zarr can open (local path or URL)."""
    return full if is_local(fs) else fs.unstrip_protocol(full)


def zarr_store(fs: fsspec.AbstractFileSystem, full: str, *, read_only: bool = False) -> Any:
    """A zarr store object for the folder ``full`` on ``fs``."""
    if is_local(fs):
        return zarr.storage.LocalStore(full, read_only=read_only)
    return zarr.storage.FsspecStore.from_mapper(fs.get_mapper(full), read_only=read_only)


def read_group_json(fs: fsspec.AbstractFileSystem, full: str) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of a group at ``full``; ``None`` when there is no group."""
    try:
        with fs.open(posixpath.join(full, "zarr.json"), "rb") as f:
            meta = json.load(f)
    except (FileNotFoundError, OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    return meta


def write_group_json(fs: fsspec.AbstractFileSystem, full: str, attrs: Mapping[str, Any]) -> None:
    """Write the ``zarr.json`` of a group with ``attrs`` (atomically on a local disk)."""
    meta = {"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)}
    fs.makedirs(full, exist_ok=True)
    data = json.dumps(meta, indent=2).encode()
    if is_local(fs):
        # write-then-rename so a reader never sees a half-written zarr.json
        tmp = posixpath.join(full, f".zarr.json.{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, posixpath.join(full, "zarr.json"))
    else:
        fs.pipe_file(posixpath.join(full, "zarr.json"), data)


def ensure_parent_groups(fs: fsspec.AbstractFileSystem, root: str, path: str) -> None:
    """Write plain group metadata for the store root and every ancestor of ``path``."""
    parts = [p for p in path.strip("/").split("/") if p][:-1]
    current = root
    for part in [None, *parts]:
        if part is not None:
            current = posixpath.join(current, part)
        if read_group_json(fs, current) is None:
            write_group_json(fs, current, {})


def jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def read_attrs(store: str, path: str) -> dict[str, Any]:
    """All group attributes of ``path`` (``"ome"``, ``"medpipe"`` …), complete or not.

    Raises
    ------
    SeriesNotFoundError
        No group at ``path``.
    """
    fs, root = store_root(store)
    meta = read_group_json(fs, join(root, path))
    if meta is None:
        raise SeriesNotFoundError(f"no group {path!r} in store {store!r}")
    return dict(meta.get("attributes", {}))


def exists(store: str, path: str) -> bool:
    """True when ``path`` holds a completely written series (its ``complete`` marker)."""
    try:
        attrs = read_attrs(store, path)
    except SeriesNotFoundError:
        return False
    return bool(attrs.get("medpipe", {}).get("complete", False))


def has_group(store: str, path: str) -> bool:
    """True when ``path`` holds a Zarr group (any ``zarr.json``: a table, a series …)."""
    fs, root = store_root(store)
    return bool(fs.exists(posixpath.join(join(root, path), "zarr.json")))


def subgroups(store: str, parent: str) -> list[str]:
    """Paths (``parent/<name>``) of the folders under ``parent`` (not temporaries), sorted."""
    fs, root = store_root(store)
    full = join(root, parent)
    try:
        entries = fs.ls(full, detail=True)
    except (FileNotFoundError, OSError):
        return []
    out = []
    for e in entries:
        name = posixpath.basename(e["name"].rstrip("/"))
        if e.get("type") != "directory" or name.startswith("."):
            continue
        out.append(posixpath.join(parent.strip("/"), name) if parent.strip("/") else name)
    return sorted(out)


def list_groups(store: str, parent: str) -> list[str]:
    """Paths (``parent/<name>``) of the completely written series under ``parent``, sorted."""
    return [rel for rel in subgroups(store, parent) if exists(store, rel)]
