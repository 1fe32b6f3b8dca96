"""The contract between readers and the store writer.

A reader turns source files into :class:`Series` objects.  A ``Series`` still holds
the raw identifiers (``uid``, ``study_uid``, ``patient_id``) so ingest can make
pseudonymous keys from them; those identifiers are never written anywhere.
``header`` holds only values that survive the DICOM PS3.15 Basic Profile.

The geometry convention is documented in :mod:`medpipe.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medpipe.errors import SourceTooLargeError
from medpipe.geometry import identity_direction

__all__ = ["MAX_BYTES", "Probe", "Series", "check_declared_size", "identity_direction"]

#: Every reader refuses a file whose header declares more pixel bytes than this,
#: before it allocates anything (8 GiB: a 2,000-slice 1024×1024 float32 CT fits).
MAX_BYTES = 8 << 30


def check_declared_size(nbytes: int, rel: str, what: str, *, limit: int = MAX_BYTES) -> None:
    """Refuse, before any allocation, a file whose header declares too many pixel bytes.

    Parameters
    ----------
    nbytes
        The pixel bytes the header declares (computed from its dimensions, in Python
        integers, so that 65535³ does not overflow).
    rel
        The file's archive-relative path, named in the error.
    what
        How the header states it (``"512×512×3000 int16"``), for the reason.
    limit
        The refusal threshold.

    Raises
    ------
    SourceTooLargeError
        ``nbytes > limit``; ingest quarantines the file with this one-line reason.
    """
    if nbytes > limit:
        raise SourceTooLargeError(
            f"header declares {what} = {nbytes} bytes of pixels, over the {limit}-byte limit",
            path=rel,
        )


@dataclass
class Series:
    """One image series read from the archive (not yet pseudonymised).

    Attributes
    ----------
    uid
        SeriesInstanceUID, or the source's relative path where there is no UID.
    sources
        Relative paths (to the archive root) of every file that contributed.
    data
        The voxels, in ``axes`` order.  Rescale already applied (HU for CT,
        SUV-scaled for PET) when ``rescale`` says so.
    modality
        DICOM Modality (``CT``, ``MR``, ``PT`` …), or ``OT`` / a reader-specific
        value (``NIFTI``, ``MICROSCOPY`` …) where unknown.
    labels
        Masks on the same grid, ``roi name -> uint8 array`` of the spatial shape.
    dropped
        Files of the group that were read but left out, with the reason (e.g. a
        second copy of the same SOP instance); ingest records them as skipped.
    rejected
        Files of the group that could not be used although the series could (e.g. a
        corrupt copy of a SOP instance that another copy replaced), with the reason;
        ingest quarantines them.
    """

    uid: str
    sources: list[str]
    data: np.ndarray
    modality: str
    spacing: tuple[float, ...]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[tuple[float, float, float], ...] = field(default_factory=identity_direction)
    axes: tuple[str, ...] = ("z", "y", "x")
    study_uid: str | None = None
    patient_id: str | None = None
    rescale: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    frame_of_reference_uid: str | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes only (drops ``c``)."""
        return tuple(n for n, a in zip(self.data.shape, self.axes, strict=True) if a != "c")


@dataclass(frozen=True)
class Probe:
    """What a cheap header-only look at one file tells ingest.

    Attributes
    ----------
    path
        Relative path of the file (POSIX separators) under the archive root.
    kind
        Name of the reader that handles it (:mod:`medpipe.io.registry`): ``"dicom"``,
        ``"nifti"``, ``"raster"``, ``"npz"`` or a registered reader's name.
    group
        Raw grouping identifier: files with equal ``(kind, group)`` are read together
        into one or more :class:`Series`.  SeriesInstanceUID for DICOM images, the
        *referenced* image SeriesInstanceUID for an RTSTRUCT, the image's relative
        path for NIfTI images and their masks, the file's own path otherwise.
        Never written anywhere; ingest stores only its keyed hash.
    role
        ``"image"`` or ``"mask"`` (RTSTRUCT, NIfTI label map), or ``"index"``
        (a DICOMDIR: recorded, not ingested).
    detail
        Small reader-specific facts (modality, SOP class, frame count…), no PHI.
    """

    path: str
    kind: str
    group: str
    role: str = "image"
    detail: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
