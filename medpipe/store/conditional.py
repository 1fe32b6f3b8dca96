"""Conditional writes on S3: exclusive create and compare-and-swap by ETag.

S3 (since 2024, and moto's server) honours ``If-None-Match: *`` on ``PutObject`` (the
write fails when the key exists) and ``If-Match: <etag>`` on ``PutObject`` and
``DeleteObject`` (it fails when the object changed since it was read).  With them the
store lock (:mod:`medpipe.store.lock`) is a real lease on S3: one taker wins the create,
one taker wins a takeover, and a holder notices at its next heartbeat that its lease was
taken.  Other object stores fall back to the lock's best-effort path (documented
there).
"""

from __future__ import annotations

import errno
from typing import Any

import fsspec

from medpipe.errors import StoreError

__all__ = ["ConditionFailed", "supported", "etag_of", "create", "swap", "delete"]


class ConditionFailed(StoreError):
    """The object changed (or exists) since it was read: the conditional write lost."""


def supported(fs: fsspec.AbstractFileSystem) -> bool:
    """True for S3 (``s3fs``), where conditional writes are used."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"s3", "s3a"} & set(protocol))


def _etag(out: Any, fs: fsspec.AbstractFileSystem, path: str) -> str:
    tag = out.get("ETag") if isinstance(out, dict) else None
    return str(tag) if tag else etag_of(fs, path)


def etag_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The object's current ETag (``FileNotFoundError`` when there is none)."""
    fs.invalidate_cache(path)
    info = fs.info(path)
    return str(info.get("ETag") or info.get("etag") or "")


def _precondition(err: OSError) -> bool:
    # s3fs: If-None-Match -> FileExistsError; If-Match -> OSError(EINVAL)
    return isinstance(err, FileExistsError) or err.errno == errno.EINVAL


def create(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> str:
    """Create ``path`` only when it does not exist (``If-None-Match: *``).

    Returns
    -------
    str
        The new object's ETag.

    Raises
    ------
    FileExistsError
        The object exists.
    """
    try:
        out = fs.pipe_file(path, data, mode="create")
    except OSError as err:
        if _precondition(err):
            raise FileExistsError(path) from err
        raise
    return _etag(out, fs, path)


def swap(fs: fsspec.AbstractFileSystem, path: str, data: bytes, etag: str) -> str:
    """Replace ``path`` only if its ETag is still ``etag`` (``If-Match``).

    Returns
    -------
    str
        The new ETag.

    Raises
    ------
    ConditionFailed
        The object changed since ``etag`` was read (or is gone).
    """
    try:
        out = fs.pipe_file(path, data, IfMatch=etag)
    except FileNotFoundError as err:
        raise ConditionFailed(path) from err
    except OSError as err:
        if _precondition(err):
            raise ConditionFailed(path) from err
        raise
    return _etag(out, fs, path)


def delete(fs: fsspec.AbstractFileSystem, path: str, etag: str) -> bool:
    """Delete ``path`` only if its ETag is still ``etag``; False when it changed or is gone."""
    bucket, key, _ = fs.split_path(path)
    try:
        fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
    except FileNotFoundError:
        return False
    except OSError as err:
        if _precondition(err):
            return False
        raise
    finally:
        fs.invalidate_cache(path)
    return True
