"""Readers: source files → :class:`~medpipe.io.base.Series`.

:func:`probe_file` takes a cheap look at one file and says which reader handles
it and which files belong together; :func:`read_group` reads one such group.
Both raise :class:`~medpipe.errors.SourceError` subclasses for files that cannot
be ingested, and ingest quarantines (or skips) them with the error's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medpipe.errors import InvalidSourceError, UnsupportedSourceError
from medpipe.io.base import Probe, Series

__all__ = ["Probe", "Series", "probe_file", "read_group", "kind_of"]

_NIFTI = (".nii", ".nii.gz")
_RASTER = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
_NPZ = (".npz",)
#: Files that are never images and are recorded as skipped without being opened.
_SIDECARS = (
    ".csv", ".tsv", ".json", ".yaml", ".yml", ".xml", ".txt", ".md", ".bval", ".bvec",
    ".parquet",
)


def kind_of(rel: str) -> str:
    """Which reader a path goes to, from its name alone (``"dicom"`` when in doubt).

    Parameters
    ----------
    rel
        Relative path of the file.

    Returns
    -------
    str
        ``"nifti"``, ``"raster"``, ``"npz"``, ``"sidecar"`` or ``"dicom"``.
    """
    name = rel.lower()
    if name.endswith(_NIFTI):
        return "nifti"
    if name.endswith(_RASTER):
        return "raster"
    if name.endswith(_NPZ):
        return "npz"
    if name.endswith(_SIDECARS):
        return "sidecar"
    return "dicom"


def probe_file(root: str | Path, rel: str) -> Probe:
    """Look at one file's header and say how to read it.

    Parameters
    ----------
    root
        Archive root.
    rel
        The file's path relative to ``root`` (POSIX separators).

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
    root = Path(root)
    kind = kind_of(rel)
    if kind == "sidecar":
        raise UnsupportedSourceError("sidecar file (not an image)", path=rel)
    if kind == "nifti":
        from medpipe.io.nifti import probe_nifti

        return probe_nifti(root, rel)
    if kind == "raster":
        from medpipe.io.raster import probe_raster

        return probe_raster(root, rel)
    if kind == "npz":
        from medpipe.io.npz import probe_npz

        return probe_npz(root, rel)
    from medpipe.io.dicom import probe_dicom

    return probe_dicom(root, rel)


def read_group(root: str | Path, kind: str, members: Sequence[tuple[str, str]]) -> list[Series]:
    """Read one group of files into series.

    Parameters
    ----------
    root
        Archive root.
    kind
        The group's reader (``Probe.kind``).
    members
        ``(relative path, role)`` pairs: the images and masks of the group.

    Returns
    -------
    list of Series
        One series, except for ``npz`` files, which hold many images.

    Raises
    ------
    SourceError
        The group cannot be read; ``error.path`` names the offending file where known.
    """
    root = Path(root)
    images = sorted(p for p, role in members if role == "image")
    masks = sorted(p for p, role in members if role == "mask")
    if not images:
        raise InvalidSourceError(
            "mask without its image (referenced series not found in the archive)",
            path=masks[0] if masks else None,
        )
    if kind == "dicom":
        from medpipe.io.dicom import read_dicom_series
        from medpipe.io.rtstruct import rasterize_rtstruct

        series = read_dicom_series(root, images)
        for rel in masks:
            for roi, mask in rasterize_rtstruct(root, rel, series).items():
                series.labels[roi] = mask
            series.sources.append(rel)
        return [series]
    if kind == "nifti":
        from medpipe.io.nifti import read_nifti

        return [read_nifti(root, images + masks)]
    if kind == "raster":
        from medpipe.io.raster import read_raster

        return [read_raster(root, r) for r in images]
    if kind == "npz":
        from medpipe.io.npz import read_npz

        return [s for r in images for s in read_npz(root, [r])]
    raise InvalidSourceError(f"no reader for kind {kind!r}", path=images[0])
