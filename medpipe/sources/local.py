"""The local-folder source: the archive as medpipe has always read it (``stat`` only)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from medpipe.sources.base import DEFAULT_CONCURRENCY, Listing, register_source

__all__ = ["LocalSource"]


class LocalSource:
    """A local archive folder; entries are files keyed by their relative POSIX path."""

    def __init__(self, root: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.root = Path(root)
        self.concurrency = concurrency

    def list(self, *, limit: int | None = None) -> Listing:
        """Every file with its size and mtime (:func:`medpipe.catalog.scan`)."""
        from medpipe.catalog import scan

        return Listing(scan(self.root, limit=limit))

    def open(self, path: str) -> BinaryIO:
        """The file's bytes."""
        return (self.root / path).open("rb")

    def fetch(
        self, paths: Sequence[str], dest: Path, *, advance: Callable[[int], None] | None = None
    ) -> set[str]:
        """Copy files into ``dest`` (ingest reads a local archive in place instead)."""
        bad = set()
        for p in paths:
            try:
                (dest / p).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.root / p, dest / p)
            except OSError:
                bad.add(p)
            if advance is not None:
                advance(1)
        return bad


register_source("local", LocalSource)
