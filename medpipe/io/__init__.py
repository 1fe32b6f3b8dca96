"""Readers: source files → :class:`~medpipe.io.base.Series`.

:func:`probe_file` takes a cheap look at one file and says which reader handles
it and which files belong together; :func:`read_group` reads one such group.
Both raise :class:`~medpipe.errors.SourceError` subclasses for files that cannot
be ingested, and ingest quarantines (or skips) them with the error's reason.

Which reader handles a file is decided by :mod:`medpipe.io.registry` from the file's
name; the built-in readers (DICOM, NIfTI, raster, npz) register themselves there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medpipe.errors import InvalidSourceError, UnsupportedSourceError

# The built-in readers register themselves on import.
from medpipe.io import dicom, nifti, npz, raster  # noqa: E402, F401, I001
from medpipe.io.base import Probe, Series
from medpipe.io.registry import (
    REGISTRY,
    SIDECARS,
    Reader,
    ReaderRegistry,
    get_reader,
    reader_for,
    register_reader,
    unregister_reader,
)

__all__ = [
    "Probe",
    "Series",
    "Reader",
    "ReaderRegistry",
    "REGISTRY",
    "SIDECARS",
    "register_reader",
    "unregister_reader",
    "reader_for",
    "get_reader",
    "probe_file",
    "read_group",
    "kind_of",
]


def kind_of(rel: str, *, registry: ReaderRegistry | None = None) -> str:
    """Which reader a path goes to, from its name alone (``"dicom"`` when in doubt).

    Parameters
    ----------
    rel
        Relative path of the file.
    registry
        Readers to choose from (default: the process-wide registry).

    Returns
    -------
    str
        A reader's name (``"nifti"``, ``"raster"``, ``"npz"``, ``"dicom"`` …) or
        ``"sidecar"``.
    """
    return (registry or REGISTRY).kind_of(rel)


def probe_file(root: str | Path, rel: str, *, registry: ReaderRegistry | None = None) -> Probe:
    """Look at one file's header and say how to read it.

    Parameters
    ----------
    root
        Archive root.
    rel
        The file's path relative to ``root`` (POSIX separators).
    registry
        Readers to choose from (default: the process-wide registry).

    Returns
    -------
    Probe

    Raises
    ------
    InvalidSourceError
        The file is corrupt or not an image; it is quarantined.
    UnsupportedSourceError
        The file is valid but holds no image medpipe ingests; it is skipped.
    """
    reader = (registry or REGISTRY).for_path(rel)
    if reader is None:
        raise UnsupportedSourceError("sidecar file (not an image)", path=rel)
    return reader.probe(Path(root), rel)


def read_group(
    root: str | Path,
    kind: str,
    members: Sequence[tuple[str, str]],
    *,
    reader: Reader | None = None,
) -> list[Series]:
    """Read one group of files into series.

    Parameters
    ----------
    root
        Archive root.
    kind
        The group's reader (``Probe.kind``), looked up in the process-wide registry
        unless ``reader`` is given.
    members
        ``(relative path, role)`` pairs: the images and masks of the group.
    reader
        The reader object itself (work sent to another process carries it, since that
        process's registry may not hold it).

    Returns
    -------
    list of Series
        One series, except for readers with ``series_per_image`` (npz), whose files
        hold many images.

    Raises
    ------
    SourceError
        The group cannot be read; ``error.path`` names the offending file where known.
    """
    images = sorted(p for p, role in members if role == "image")
    masks = sorted(p for p, role in members if role == "mask")
    if not images:
        # No path: every mask of the group gets this reason itself (none is at fault).
        raise InvalidSourceError(
            "mask without its image (referenced series not found in the archive)"
        )
    try:
        reader = reader or get_reader(kind)
    except InvalidSourceError as err:
        raise InvalidSourceError(err.reason, path=images[0]) from None
    return reader.read(Path(root), images, masks)
