"""The reader registry: which :class:`Reader` handles a file, from its name alone.

A reader is any object with a ``name`` (the ``Probe.kind`` it produces), the file
name ``suffixes`` it claims, and ``probe`` / ``read`` methods (:class:`Reader`).  The
built-in readers register themselves with one :func:`register_reader` call at the end
of their module; a new format needs no edit anywhere else::

    class MyReader:
        name = "myformat"
        suffixes = (".my",)
        series_per_image = False

        def probe(self, root, rel): ...
        def read(self, root, images, masks): ...

    register_reader(MyReader())

Files whose names end in a sidecar suffix (:data:`SIDECARS`) are recorded as skipped
without being opened; any other unknown name goes to the fall-back reader (DICOM,
whose files often have no suffix at all).

Work that goes to other processes (Dask workers) carries the reader objects
themselves - a :class:`~medpipe.ingest.GroupPlan` holds its reader, and
:func:`medpipe.ingest.probe_batch` takes a registry snapshot - because a worker
process only knows the readers its own imports registered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from medpipe.errors import InvalidSourceError
from medpipe.io.base import Probe, Series

__all__ = [
    "SIDECARS",
    "Reader",
    "ReaderRegistry",
    "REGISTRY",
    "register_reader",
    "unregister_reader",
    "reader_for",
    "get_reader",
]

#: Files that are never images and are recorded as skipped without being opened.
SIDECARS: tuple[str, ...] = (
    ".csv",
    ".tsv",
    ".json",
    ".yaml",
    ".yml",
    ".xml",
    ".txt",
    ".md",
    ".bval",
    ".bvec",
    ".parquet",
)


@runtime_checkable
class Reader(Protocol):
    """What a reader offers ingest.

    Attributes
    ----------
    name
        The reader's kind: ``Probe.kind`` of its probes, recorded in the catalog.
    suffixes
        Lower-case file name endings it claims (``".nii.gz"``); the longest match wins.
    series_per_image
        ``True`` when one file holds many images that become series of their own, each
        keyed by its own identifier (``npz``); ``False`` when a group is one series.
    """

    name: str
    suffixes: tuple[str, ...]
    series_per_image: bool

    def probe(self, root: Path, rel: str) -> Probe:
        """Header-only look at one file (raises a ``SourceError`` subclass)."""
        ...

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        """Read one group: its image files and mask files (sorted relative paths)."""
        ...


class ReaderRegistry:
    """Readers by name and by file-name suffix, with a fall-back for unknown names.

    Parameters
    ----------
    readers
        Readers to register at once.
    fallback
        Name of the reader for names no reader claims (registered later is fine).
    sidecars
        Suffixes of files recorded as skipped without a reader.
    """

    def __init__(
        self,
        readers: Iterable[Reader] = (),
        *,
        fallback: str = "dicom",
        sidecars: Sequence[str] = SIDECARS,
    ) -> None:
        self._readers: dict[str, Reader] = {}
        self.fallback = fallback
        self.sidecars = tuple(sidecars)
        for r in readers:
            self.register(r)

    def register(self, reader: Reader, *, replace: bool = False) -> Reader:
        """Add a reader (returns it).

        Raises
        ------
        ValueError
            Another reader already has this name (without ``replace``), or the object
            is not a :class:`Reader`.
        """
        if not isinstance(reader, Reader):
            raise ValueError(f"{reader!r} is not a Reader (name, suffixes, probe, read)")
        if reader.name in self._readers and not replace:
            raise ValueError(f"a reader named {reader.name!r} is already registered")
        self._readers[reader.name] = reader
        return reader

    def unregister(self, name: str) -> Reader | None:
        """Remove the reader called ``name`` (returns it, or ``None``)."""
        return self._readers.pop(name, None)

    @property
    def names(self) -> list[str]:
        """Names of the registered readers, in registration order."""
        return list(self._readers)

    def get(self, name: str) -> Reader:
        """The reader called ``name``.

        Raises
        ------
        InvalidSourceError
            No reader of that name is registered (in this process).
        """
        try:
            return self._readers[name]
        except KeyError:
            raise InvalidSourceError(f"no reader for kind {name!r}") from None

    def for_path(self, rel: str) -> Reader | None:
        """The reader of a file, from its name: ``None`` for a sidecar file.

        The reader claiming the longest matching suffix wins; names nobody claims go
        to the fall-back reader.
        """
        name = rel.lower()
        best: Reader | None = None
        best_len = 0
        for r in self._readers.values():
            for s in r.suffixes:
                if len(s) > best_len and name.endswith(s.lower()):
                    best, best_len = r, len(s)
        if best is not None:
            return best
        if name.endswith(self.sidecars):
            return None
        return self.get(self.fallback)

    def kind_of(self, rel: str) -> str:
        """The reader's name for a path, or ``"sidecar"``."""
        reader = self.for_path(rel)
        return "sidecar" if reader is None else reader.name

    def snapshot(self) -> ReaderRegistry:
        """A copy holding the same reader objects (to send to other processes)."""
        return ReaderRegistry(
            self._readers.values(), fallback=self.fallback, sidecars=self.sidecars
        )


#: The process-wide registry the built-in readers register with.
REGISTRY = ReaderRegistry()


def register_reader(reader: Reader, *, replace: bool = False) -> Reader:
    """Register a reader with the process-wide registry (see :class:`ReaderRegistry`)."""
    return REGISTRY.register(reader, replace=replace)


def unregister_reader(name: str) -> Reader | None:
    """Remove a reader from the process-wide registry."""
    return REGISTRY.unregister(name)


def reader_for(rel: str) -> Reader | None:
    """The process-wide registry's reader for a file name (``None``: sidecar)."""
    return REGISTRY.for_path(rel)


def get_reader(name: str) -> Reader:
    """The process-wide registry's reader called ``name``."""
    return REGISTRY.get(name)
