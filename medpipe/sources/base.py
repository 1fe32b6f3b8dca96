"""The archive source protocol, its registry by URL scheme, and the local staging area.

An archive is named by one string everywhere (``medpipe ingest ARCHIVE``, the flows'
``archive`` parameter): a local folder, any fsspec URL (``s3://bucket/prefix``,
``file://…``) or a DICOMweb server (``dicomweb+http(s)://host/…/dicom-web``).  A
:class:`Source` lists the archive's entries (a stable key, and a size/mtime or a
metadata hash that says whether the entry changed) and copies entries into a local
folder.  Readers only ever see local files: ingest stages the entries it needs (new or
changed ones, and the unchanged siblings of a touched series) into a temporary folder
(:class:`Staging`) and reads them there; a night without changes stages nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from medpipe.catalog import FileStat
from medpipe.errors import ConfigError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Listing",
    "Source",
    "Staging",
    "register_source",
    "source_schemes",
    "scheme_of",
    "is_url",
    "open_source",
    "staged",
]

log = logging.getLogger(__name__)


class Listing(list[FileStat]):
    """A source's entries, sorted by key: a list of :class:`~medpipe.catalog.FileStat`.

    ``covers`` is ``None`` for a complete listing.  A partial listing (a DICOMweb
    StudyDate window) sets it to a predicate over catalog paths: only catalogued paths
    it covers, and that are not listed, count as missing from the archive
    (:func:`medpipe.catalog.diff`); the others were simply not looked at.
    """

    covers: Callable[[str], bool] | None = None


@runtime_checkable
class Source(Protocol):
    """An archive: what :func:`open_source` returns for a URL."""

    def list(self, *, limit: int | None = None) -> Listing:
        """Every entry (or the first ``limit`` by key), without reading any content."""
        ...

    def open(self, path: str) -> BinaryIO:
        """One entry's bytes, as a binary file object (the caller closes it)."""
        ...

    def fetch(
        self, paths: Sequence[str], dest: Path, *, advance: Callable[[int], None] | None = None
    ) -> set[str]:
        """Copy entries to ``dest / path``; returns the paths that could not be fetched.

        ``advance(n)`` is called as each batch of ``n`` entries is done (a progress bar).
        """
        ...


#: Parallel retrievals from one archive by default (a PACS must not be overloaded).
DEFAULT_CONCURRENCY = 4

_SOURCES: dict[str, Callable[..., Source]] = {}


def register_source(scheme: str, factory: Callable[..., Source]) -> None:
    """Make ``scheme://…`` archives open with ``factory(url, concurrency=n)``.

    Parameters
    ----------
    scheme
        The URL scheme, e.g. ``"dicomweb+http"``; ``"*"`` is the fallback for every
        scheme fsspec knows.
    factory
        Builds the :class:`Source` for a URL; ``concurrency`` bounds its parallel
        retrievals.
    """
    _SOURCES[scheme] = factory


def source_schemes() -> tuple[str, ...]:
    """The registered schemes (``"*"``: any fsspec protocol)."""
    return tuple(sorted(_SOURCES))


def scheme_of(archive: str) -> str | None:
    """The URL scheme of ``archive`` (``None`` for a local path).

    A one-letter "scheme" is a Windows drive (``C:\\…``), not a URL.
    """
    head, sep, _ = str(archive).partition("://")
    if not sep or len(head) < 2 or not all(c.isalnum() or c in "+.-" for c in head):
        return None
    return head.lower()


def is_url(archive: str) -> bool:
    """Whether ``archive`` is a URL (read through a :class:`Source`) rather than a path."""
    return scheme_of(archive) is not None


def open_source(archive: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> Source:
    """The :class:`Source` for an archive URL or local path.

    Parameters
    ----------
    archive
        A local folder, an fsspec URL or a ``dicomweb+http(s)://`` URL.
    concurrency
        At most this many retrievals at a time.

    Returns
    -------
    Source

    Raises
    ------
    ConfigError
        No source handles the URL's scheme (the message lists the known ones).
    """
    from medpipe.sources import dicomweb, fsspec_source, local  # noqa: F401 - registration

    scheme = scheme_of(archive)
    if scheme is None:
        return _SOURCES["local"](str(archive), concurrency=concurrency)
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    from urllib.parse import urlsplit

    if urlsplit(archive).password is not None:  # it would land in logs and run parameters
        raise ConfigError(
            "archive: credentials in the URL are refused; set them in the environment "
            "(MEDPIPE_DICOMWEB_TOKEN / MEDPIPE_DICOMWEB_USER + _PASSWORD, or boto/fsspec's)"
        )
    if scheme in _SOURCES:
        return _SOURCES[scheme](archive, concurrency=concurrency)
    import fsspec

    if scheme in fsspec.available_protocols():
        return _SOURCES["*"](archive, concurrency=concurrency)
    raise ConfigError(
        f"archive: no source for URL scheme {scheme!r}: use a local folder, an fsspec URL "
        f"({', '.join(sorted(fsspec.available_protocols())[:8])}, …) or dicomweb+http(s)://"
    )


class Staging:
    """A local folder holding copies of a remote archive's entries, for the readers.

    For a local archive :attr:`root` is the archive itself and :meth:`fetch` does
    nothing.  Otherwise each entry is fetched once into ``root / path`` (the catalog's
    path), so readers, hashes and reasons work exactly as on a folder.
    """

    def __init__(self, source: Source | None, root: Path) -> None:
        self.source = source
        self.root = root
        self._have: set[str] = set()
        self.failed: set[str] = set()

    @property
    def local(self) -> bool:
        """Whether the archive is a local folder (nothing is copied)."""
        return self.source is None

    def fetch(self, paths: Iterable[str]) -> set[str]:
        """Copy the entries not yet staged; returns those that could not be fetched.

        Parameters
        ----------
        paths
            Catalog paths (entry keys).

        Returns
        -------
        set of str
            Paths that failed (after the source's retries) in this call or earlier:
            ingest leaves them out of this run, writes no catalog row for them, so the
            next run tries them again.
        """
        if self.source is None:
            return set()
        paths = list(paths)  # may be a generator: read twice below
        todo = sorted({p for p in paths if p not in self._have and p not in self.failed})
        if todo:
            from medpipe.progress import progress_bar

            with progress_bar(len(todo), "retrieve") as advance:
                bad = self.source.fetch(todo, self.root, advance=advance)
            self.failed |= bad
            self._have |= set(todo) - bad
        return {p for p in paths if p in self.failed}


@contextmanager
def staged(archive: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> Iterator[Staging]:
    """A :class:`Staging` for ``archive``, removed with everything in it on exit.

    Parameters
    ----------
    archive
        A local folder (staged in place) or a URL.
    concurrency
        At most this many retrievals at a time (a flow parameter).

    Yields
    ------
    Staging
    """
    if not is_url(archive):
        yield Staging(None, Path(archive))
        return
    source = open_source(archive, concurrency=concurrency)
    root = Path(tempfile.mkdtemp(prefix="medpipe-stage-"))
    try:
        yield Staging(source, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
