"""Any fsspec URL as an archive: ``s3://bucket/prefix``, ``gs://…``, ``file://…``.

Credentials and endpoints come from the usual fsspec/boto configuration (for S3:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
``~/.aws``; fsspec's own config files), never from medpipe.  Listing is one recursive
``find`` (object metadata only: for S3 a paged ``ListObjectsV2``); an entry's change
signal is its ETag (or generation, md5, checksum) where the filesystem gives one, else
its size and modification time.  Only new or changed objects are read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from medpipe.catalog import FileStat
from medpipe.errors import ConfigError
from medpipe.sources.base import DEFAULT_CONCURRENCY, Listing, register_source

__all__ = ["FsspecSource", "entry_stat"]

log = logging.getLogger(__name__)

#: Metadata fields that change whenever an object's content does, in preference order.
_VERSION_FIELDS = ("ETag", "etag", "generation", "md5Hash", "md5", "checksum", "version_id")


def _mtime_ns(info: Mapping[str, Any]) -> int:
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            return int(value.timestamp() * 1_000_000_000)
        if isinstance(value, int | float):
            return int(float(value) * 1_000_000_000)
        try:
            return int(datetime.fromisoformat(str(value)).timestamp() * 1_000_000_000)
        except ValueError:
            continue
    return 0


def entry_stat(rel: str, info: Mapping[str, Any]) -> FileStat:
    """The catalog's view of one fsspec ``info`` record.

    Parameters
    ----------
    rel
        The object's path relative to the archive prefix.
    info
        ``fs.info`` / ``fs.find(detail=True)`` record.

    Returns
    -------
    FileStat
        Size, modification time (ns, 0 when unknown) and ``meta``: the object's
        version field (ETag …) when it has one.
    """
    meta = next((str(info[k]).strip('"') for k in _VERSION_FIELDS if info.get(k)), None)
    return FileStat(rel, int(info.get("size") or 0), _mtime_ns(info), meta)


class FsspecSource:
    """An archive under an fsspec URL prefix; entries keyed by their relative path."""

    def __init__(self, url: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.url = url
        self.concurrency = concurrency
        self.fs, self.prefix = fsspec.core.url_to_fs(url)
        self.prefix = self.prefix.rstrip("/")

    def list(self, *, limit: int | None = None) -> Listing:
        """Every object under the prefix (hidden names skipped), by relative path."""
        try:
            found = self.fs.find(self.prefix, detail=True)
        except FileNotFoundError as err:
            raise ConfigError(f"archive {self.url} does not exist") from err
        if not found and not self.fs.isdir(self.prefix):
            # a mistyped prefix must not read as "every file went missing"
            raise ConfigError(f"archive {self.url} does not exist (no object under it)")
        base = self.prefix + "/"
        out = []
        for full, info in found.items():
            if info.get("type", "file") != "file" or not full.startswith(base):
                continue
            rel = full[len(base) :]
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            out.append(entry_stat(rel, info))
        out.sort(key=lambda f: f.path)
        return Listing(out[:limit] if limit is not None else out)

    def open(self, path: str) -> BinaryIO:
        """The object's bytes."""
        return self.fs.open(f"{self.prefix}/{path}", "rb")

    def fetch(
        self, paths: Sequence[str], dest: Path, *, advance: Callable[[int], None] | None = None
    ) -> set[str]:
        """Download objects to ``dest / path``, ``concurrency`` at a time."""

        def one(p: str) -> str | None:
            target = dest / p
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fs.get_file(f"{self.prefix}/{p}", str(target))
            except (OSError, ValueError) as err:
                log.warning("could not fetch an archive object: %s", type(err).__name__)
                return p
            finally:
                if advance is not None:
                    advance(1)
            return None

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return {p for p in pool.map(one, paths) if p is not None}


register_source("*", FsspecSource)
