"""DICOM SEG → voxel masks on the grid of the referenced image series.

The SEG object is read with highdicom (:func:`highdicom.seg.segread`).  Its frames are
rasters on the planes of the source images, so they are placed, not resampled: each
frame's ImagePositionPatient is mapped into the image's voxel index space (as the
RTSTRUCT contours are, :mod:`medpipe.io.rtstruct`), and must land on a slice plane at
in-plane index (0, 0), with the image's orientation, pixel spacing, rows and columns.
A SEG on another grid is refused with that reason rather than resampled silently.

Each segment becomes one label, named by its Segment Label (sanitised as ROI names
are).  BINARY frames hold 0/1; FRACTIONAL frames hold 0…MaximumFractionalValue and
are cut at one half; LABELMAP frames hold the segment number of each pixel.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medpipe.errors import InvalidSourceError, SeriesGeometryError
from medpipe.io.base import Series
from medpipe.io.rtstruct import _world_to_index, sanitize_roi_name, unique_name

__all__ = ["rasterize_seg", "seg_referenced_series"]

#: How far (in voxels) a frame's position may sit from a voxel centre of the image.
_POSITION_TOLERANCE = 0.1
#: Tolerance on direction cosines and on the relative pixel spacing.
_GRID_TOLERANCE = 1e-4


def seg_referenced_series(ds: Dataset) -> str | None:
    """SeriesInstanceUID of the image series a SEG object segments.

    Parameters
    ----------
    ds
        The SEG dataset (its header is enough).

    Returns
    -------
    str or None
        The first Referenced Series Sequence item's SeriesInstanceUID (the Common
        Instance Reference module), or ``None`` where the SEG names none.
    """
    for item in ds.get("ReferencedSeriesSequence", []) or []:
        uid = item.get("SeriesInstanceUID")
        if uid:
            return str(uid)
    return None


def _functional(ds: Dataset, frame: Dataset | None, sequence: str) -> Dataset | None:
    """First item of a functional group, per-frame first, then shared."""
    groups = [frame] if frame is not None else []
    groups += list(ds.get("SharedFunctionalGroupsSequence", []) or [])
    for group in groups:
        items = group.get(sequence, []) or []
        if items:
            return items[0]
    return None


def _check_raster(ds: Dataset, image: Series, rel: str) -> None:
    """Refuse a SEG whose frames have another raster size than the image's planes."""
    ny, nx = image.spatial_shape[-2:]
    if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
        raise SeriesGeometryError(
            f"SEG frames are {ds.Rows}x{ds.Columns} pixels, the image {ny}x{nx}", path=rel
        )


def _check_plane(ds: Dataset, frame: Dataset | None, image: Series, rel: str) -> None:
    """Refuse a frame whose orientation or pixel spacing differs from the image."""
    direction = np.asarray(image.direction, dtype=np.float64)
    orientation = _functional(ds, frame, "PlaneOrientationSequence")
    if orientation is not None and "ImageOrientationPatient" in orientation:
        cosines = np.asarray([float(v) for v in orientation.ImageOrientationPatient])
        # DICOM: row cosine (along a row, array x) then column cosine (array y).
        if not np.allclose(cosines, np.r_[direction[-1], direction[-2]], atol=_GRID_TOLERANCE):
            raise SeriesGeometryError(
                "SEG frames have another orientation than the image", path=rel
            )
    measures = _functional(ds, frame, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        spacing = np.asarray([float(v) for v in measures.PixelSpacing])
        if not np.allclose(spacing, image.spacing[-2:], rtol=_GRID_TOLERANCE):
            raise SeriesGeometryError(
                f"SEG pixel spacing {spacing.tolist()} differs from the image's "
                f"{list(image.spacing[-2:])} (SEG frames are not resampled)",
                path=rel,
            )


def _slice_index(
    ds: Dataset,
    frame: Dataset | None,
    to_index: tuple[np.ndarray, np.ndarray],
    nz: int,
    rel: str,
) -> int:
    """Slice of the image a frame lies on (its position must be a voxel centre).

    ``to_index`` is the image's ``(inverse direction·spacing, origin)`` from
    :func:`~medpipe.io.rtstruct._world_to_index`, computed once per SEG.
    """
    position = _functional(ds, frame, "PlanePositionSequence")
    if position is None or "ImagePositionPatient" not in position:
        if nz == 1:
            return 0  # a single-plane image: frames without positions lie on it
        raise InvalidSourceError("a SEG frame has no Image Position (Patient)", path=rel)
    inv, origin = to_index
    idx = (np.asarray([float(v) for v in position.ImagePositionPatient]) - origin) @ inv.T
    k = int(np.round(idx[0]))
    if np.any(np.abs(idx - [k, 0.0, 0.0]) > _POSITION_TOLERANCE):
        raise SeriesGeometryError(
            "a SEG frame does not lie on a slice plane of the image", path=rel
        )
    if not 0 <= k < nz:
        raise SeriesGeometryError(
            f"a SEG frame lies outside the image (slice index {k} of {nz})", path=rel
        )
    return k


def _segment_names(seg: Dataset, numbers: list[int]) -> dict[int, str]:
    """Segment number → unique sanitised label."""
    names: dict[int, str] = {}
    for number in numbers:
        label = str(seg.get_segment_description(number).segment_label or "")
        names[number] = unique_name(sanitize_roi_name(label or f"segment_{number}"), names.values())
    return names


def rasterize_seg(root: Path, rel: str, image: Series) -> dict[str, np.ndarray]:
    """Place every segment of a DICOM SEG object on ``image``'s grid.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the SEG file.
    image
        The referenced image series (its geometry defines the grid).

    Returns
    -------
    dict
        ``sanitised segment label -> uint8 mask`` of ``image.spatial_shape`` (1 inside),
        one per segment the SEG defines (a segment without frames is all zero).

    Raises
    ------
    InvalidSourceError
        The file is unreadable or not a valid SEG object.
    SeriesGeometryError
        The SEG uses another frame of reference, or its frames are not on the image's
        slice planes, pixel grid and orientation.
    """
    import highdicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = highdicom.seg.segread(Path(root) / rel)
    except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError, KeyError) as exc:
        line = " ".join(str(exc).split())[:200]
        raise InvalidSourceError(f"unreadable DICOM SEG: {line}", path=rel) from None
    for_uid = str(seg.get("FrameOfReferenceUID", "") or "")
    if for_uid and image.frame_of_reference_uid and for_uid != image.frame_of_reference_uid:
        raise SeriesGeometryError(
            "the SEG uses another frame of reference than the image", path=rel
        )

    shape = image.spatial_shape
    if len(shape) == 2:
        shape = (1, *shape)
    nz = shape[0]
    kind = seg.segmentation_type.value
    numbers = [int(n) for n in seg.get_segment_numbers()]
    names = _segment_names(seg, numbers)
    out = {names[n]: np.zeros(shape, dtype=np.uint8) for n in numbers}
    half = float(seg.get("MaximumFractionalValue", 1) or 1) / 2
    frames = list(seg.get("PerFrameFunctionalGroupsSequence", []) or [])
    n_frames = seg.number_of_frames
    if frames and len(frames) != n_frames:
        raise InvalidSourceError(
            f"SEG declares {len(frames)} per-frame groups for {n_frames} frames", path=rel
        )
    _check_raster(seg, image, rel)
    to_index = _world_to_index(image)
    for i in range(n_frames):
        frame = frames[i] if frames else None
        _check_plane(seg, frame, image, rel)
        k = _slice_index(seg, frame, to_index, nz, rel)
        try:
            stored = np.asarray(seg.get_stored_frame(i, as_index=True))
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            line = " ".join(str(exc).split())[:200]
            raise InvalidSourceError(
                f"SEG frame {i + 1} cannot be decoded: {line}", path=rel
            ) from None
        if kind == "LABELMAP":
            for number in numbers:
                out[names[number]][k] |= (stored == number).view(np.uint8)
            continue
        ident = _functional(seg, frame, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None else -1
        if number not in names:
            raise InvalidSourceError(
                f"SEG frame {i + 1} refers to segment {number}, which is not defined",
                path=rel,
            )
        inside = stored >= half if kind == "FRACTIONAL" else stored > 0
        out[names[number]][k] |= inside.view(np.uint8)
    if len(image.spatial_shape) == 2:
        out = {name: mask[0] for name, mask in out.items()}
    return out
