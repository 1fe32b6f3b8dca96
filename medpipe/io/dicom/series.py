"""Reading one DICOM series into a :class:`~medpipe.io.base.Series`.

Four steps: :func:`_load` reads the headers (one copy of each SOP instance, others kept
as decoding fall-backs), :func:`~medpipe.io.dicom.geometry.stack_geometry` orders the
planes, :func:`_pixels` decodes and stacks them (MONOCHROME1 inverted to MONOCHROME2,
:func:`~medpipe.io.dicom.frames.monochrome1_to_2`), and the modality rescale is applied
by its coder (:class:`~medpipe.io.coding.ModalityRescale`), with PET converted to
body-weight SUV where its header allows (:mod:`medpipe.io.dicom.suv`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset

from medpipe.deid import basic_profile_filter
from medpipe.errors import InvalidSourceError, SeriesGeometryError, UnsupportedSourceError
from medpipe.io.base import Series
from medpipe.io.coding import ModalityRescale
from medpipe.io.dicom.frames import _decode_first_good, _Frame, _frames_of, stored_range
from medpipe.io.dicom.geometry import stack_geometry
from medpipe.io.dicom.part10 import _PIXEL_TAGS, DEFAULT_MAX_BYTES, _dcmread, _open_part10, _quiet
from medpipe.io.dicom.slabs import (
    STREAM_MIN_BYTES,
    files_bytes,
    lazy_planes,
    load_headers,
    stored_dtype,
)
from medpipe.io.dicom.suv import SUV_COMPUTED, suv_bw
from medpipe.io.dicom.values import _check_size, _declared_bytes, _get, _image_size


def read_dicom_series(
    root: Path,
    rels: Sequence[str],
    *,
    tolerance: float = 0.01,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Series:
    """Read all image files of one DICOM series into a :class:`Series`.

    Parameters
    ----------
    root
        Archive root.
    rels
        Relative paths of the series' image files (any order).
    tolerance
        Allowed relative deviation of each slice gap from the mean slice spacing.
    max_bytes
        Refuse series whose declared pixel data is larger than this.

    Returns
    -------
    Series
        Axes ``(z, y, x)`` or, for colour, ``(c, y, x)`` / ``(c, z, y, x)``.  Rescale
        applied (float32) when it is not the identity.

    Raises
    ------
    InvalidSourceError
        A file is unreadable or its pixel data cannot be decoded.
    UnsupportedSourceError
        A file holds no image.
    SeriesGeometryError
        Mixed orientation, duplicate positions, missing slices or uneven spacing.
    SourceTooLargeError
        The declared pixel data exceeds ``max_bytes``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        return _read_series(Path(root), list(rels), tolerance=tolerance, max_bytes=max_bytes)


@dataclass
class _Loaded:
    """The headers of a series: one dataset per SOP instance, and its planes."""

    datasets: list[FileDataset] = field(default_factory=list)
    rels: list[str] = field(default_factory=list)
    frames: list[_Frame] = field(default_factory=list)
    copies: dict[str, list[tuple[FileDataset, str]]] = field(default_factory=dict)
    total: int = 0


def _load(root: Path, rels: list[str], max_bytes: int) -> _Loaded:
    """Read every file (with pixels); the same SOP instance twice is kept as a fall-back."""
    out = _Loaded()
    first_size: tuple[int, int, int, int, int] | None = None
    seen: dict[str, str] = {}
    with _quiet():
        for rel in rels:
            with _open_part10(root / rel, rel) as fp:
                ds = _dcmread(fp, rel, stop_before_pixels=False)
            sop_uid = str(_get(ds, "SOPInstanceUID", rel, "") or "")
            if sop_uid and sop_uid in seen:
                # The same SOP instance stored twice (e.g. re-exported in another transfer
                # syntax): one copy is used, the others are kept as fall-backs for decoding.
                out.copies[seen[sop_uid]].append((ds, rel))
                continue
            if sop_uid:
                seen[sop_uid] = rel
                out.copies[rel] = []
            fi = len(out.rels)
            out.rels.append(rel)
            if not any(t in ds for t in _PIXEL_TAGS):
                raise UnsupportedSourceError("object without pixel data (not an image)", path=rel)
            size = _image_size(ds, rel)
            out.total += _declared_bytes(size)
            _check_size((out.total, 1, 1, 1, 8), rel, max_bytes)
            if first_size is None:
                first_size = size
            elif size[:2] != first_size[:2] or size[3] != first_size[3]:
                raise SeriesGeometryError(
                    f"image size {size[0]}x{size[1]}x{size[3]} differs from "
                    f"{first_size[0]}x{first_size[1]}x{first_size[3]} in the same series",
                    path=rel,
                )
            out.frames.extend(_frames_of(ds, fi, size[2], rel))
            out.datasets.append(ds)
    return out


def _pixels(
    loaded: _Loaded, order: list[int], dropped: dict[str, str], rejected: dict[str, str]
) -> np.ndarray:
    """Decode every file (falling back to other copies) and stack the planes (z, y, x, c).

    ``loaded.rels`` is updated to the copies actually used.
    """
    decoded = []
    for fi, (ds, rel) in enumerate(zip(loaded.datasets, loaded.rels, strict=True)):
        arr, used = _decode_first_good(ds, rel, loaded.copies.get(rel, []), rejected)
        decoded.append(arr)
        loaded.rels[fi] = used
        for _, other in loaded.copies.get(rel, []):
            if other != used and other not in rejected:
                dropped[other] = f"duplicate SOP instance (same as {used})"
    frames = loaded.frames
    return np.stack([decoded[frames[k].file][frames[k].index] for k in order])


def _rescale(
    frames: list[_Frame],
    order: list[int],
    data: np.ndarray,
    get0: Any,
    header: dict[str, Any],
    datasets: Sequence[FileDataset],
) -> ModalityRescale:
    """The modality rescale of the sorted planes (the identity for colour data).

    Grey PET (Modality ``PT``) is converted to body-weight SUV where its header allows
    (:func:`~medpipe.io.dicom.suv.suv_bw`); otherwise it keeps its stored units and
    the coder's ``suv`` record says why.
    """
    slopes = [frames[k].slope for k in order]
    inters = [frames[k].intercept for k in order]
    identity = all(s == 1.0 for s in slopes) and all(i == 0.0 for i in inters)
    if data.shape[-1] != 1 and not identity:
        # The modality LUT (rescale) applies to grey-level data only (PS3.3 C.11.1).
        header["rescale_ignored"] = "colour image: RescaleSlope/Intercept not applied"
        slopes, inters = [1.0] * len(slopes), [0.0] * len(inters)
    modality = str(get0("Modality", "OT") or "OT")
    rtype = frames[order[0]].rescale_type
    units = get0("Units")
    if rtype is None:
        if modality == "CT":
            rtype = "HU"
        elif modality == "PT" and units:
            rtype = str(units)
        else:
            rtype = "US"
    suv = factor = None
    if modality == "PT" and data.shape[-1] == 1:
        result = suv_bw(datasets)
        suv = result.attrs
        if result.status == SUV_COMPUTED:
            factor, rtype = result.factor, "GML"  # SUVbw, in g/ml
    return ModalityRescale(
        slope=slopes,
        intercept=inters,
        type=str(rtype),
        units=str(units) if units else None,
        stored_dtype=str(data.dtype),
        suv_factor=factor,
        suv=suv,
    )


def _note_monochrome1(
    header: dict[str, Any], ds0: FileDataset, dtype: np.dtype, coder: ModalityRescale
) -> None:
    """The header of a series whose MONOCHROME1 planes were inverted to MONOCHROME2.

    The values now read as MONOCHROME2; a VOI window (on the rescaled values) is moved
    to the inverted values (centre ``s * (lo + hi) + 2 * b - centre``, same width), and
    an ``INVERSE`` Presentation LUT Shape becomes ``IDENTITY``.
    """
    lo, hi = stored_range(ds0, dtype)
    header["PhotometricInterpretation"] = "MONOCHROME2"
    header["photometric_converted"] = (
        f"MONOCHROME1 inverted to MONOCHROME2: x -> {hi + lo:g} - x over the stored range "
        f"[{lo:g}, {hi:g}]"
        if np.isfinite(lo)
        else "MONOCHROME1 inverted to MONOCHROME2 over the data's minimum and maximum"
    )
    if header.get("PresentationLUTShape") == "INVERSE":
        header["PresentationLUTShape"] = "IDENTITY"
    centre = header.get("WindowCenter")
    if centre is None:
        return
    if not np.isfinite(lo) or len(set(coder.slope)) != 1 or len(set(coder.intercept)) != 1:
        # The window cannot be moved exactly: drop it rather than keep a wrong one.
        header.pop("WindowCenter", None)
        header.pop("WindowWidth", None)
        return
    total = coder.slope[0] * (lo + hi) + 2 * coder.intercept[0]
    if isinstance(centre, list):
        header["WindowCenter"] = [total - float(c) for c in centre]
    else:
        header["WindowCenter"] = total - float(centre)


def _to_axes(
    data: np.ndarray, sz: float, pixel_spacing: tuple[float, float]
) -> tuple[np.ndarray, tuple[str, ...], tuple[float, ...]]:
    """(z, y, x, c) planes → ``(z, y, x)``, ``(c, y, x)`` or ``(c, z, y, x)`` with spacing."""
    zyx = (float(sz), float(pixel_spacing[0]), float(pixel_spacing[1]))
    if data.shape[-1] == 1:
        return np.ascontiguousarray(data[..., 0]), ("z", "y", "x"), zyx
    if data.shape[0] == 1:
        return np.ascontiguousarray(np.moveaxis(data[0], -1, 0)), ("c", "y", "x"), zyx[1:]
    return np.ascontiguousarray(np.moveaxis(data, -1, 0)), ("c", "z", "y", "x"), zyx


def _read_series(root: Path, rels: list[str], *, tolerance: float, max_bytes: int) -> Series:
    if not rels:
        raise InvalidSourceError("empty series (no files)")
    if files_bytes(root, rels) > STREAM_MIN_BYTES:
        headers = load_headers(root, rels, max_bytes)
        if headers is not None:
            return _stream_series(root, headers, tolerance=tolerance)
    loaded = _load(root, rels, max_bytes)
    rels = loaded.rels
    ds0 = loaded.datasets[0]

    def get0(keyword: str, default: Any = None) -> Any:
        with _quiet():
            return _get(ds0, keyword, rels[0], default)

    header: dict[str, Any] = basic_profile_filter(ds0)
    frames = loaded.frames
    order, sz, pixel_spacing, origin, direction = stack_geometry(
        frames, rels, len(loaded.datasets), tolerance, get0("SpacingBetweenSlices"), header
    )
    _check_size((loaded.total, 1, 1, 1, 8), rels[0], max_bytes)
    dropped: dict[str, str] = {}
    rejected: dict[str, str] = {}
    data = _pixels(loaded, order, dropped, rejected)
    coder = _rescale(frames, order, data, get0, header, loaded.datasets)
    if any(str(d.get("PhotometricInterpretation", "")) == "MONOCHROME1" for d in loaded.datasets):
        _note_monochrome1(header, ds0, data.dtype, coder)
    data = coder.decode(data)
    data, axes, spacing = _to_axes(data, sz, pixel_spacing)

    return _series(
        get0,
        rels,
        [rels[frames[k].file] for k in order if frames[k].index == 0],
        data=data,
        axes=axes,
        spacing=spacing,
        origin=origin,
        direction=direction,
        coder=coder,
        header=header,
        dropped=dropped,
        rejected=rejected,
    )


def _series(
    get0: Any,
    rels: list[str],
    sources: list[str],
    *,
    data: Any,
    axes: tuple[str, ...],
    spacing: tuple[float, ...],
    origin: Any,
    direction: Any,
    coder: ModalityRescale,
    header: dict[str, Any],
    dropped: dict[str, str],
    rejected: dict[str, str],
) -> Series:
    uid = get0("SeriesInstanceUID")
    study = get0("StudyInstanceUID")
    pid = get0("PatientID")
    for_uid = get0("FrameOfReferenceUID")
    return Series(
        uid=str(uid) if uid else rels[0],
        sources=sources,
        dropped=dropped,
        rejected=rejected,
        data=data,
        modality=str(get0("Modality", "OT") or "OT"),
        spacing=spacing,
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=tuple(tuple(float(v) for v in row) for row in direction),
        axes=axes,
        study_uid=str(study) if study else None,
        patient_id=str(pid) if pid else None,
        rescale=coder.attrs,
        header=header,
        frame_of_reference_uid=str(for_uid) if for_uid else None,
    )


def _stream_series(root: Path, headers: Any, *, tolerance: float) -> Series:
    """A large series of single-frame grey files, its voxels read lazily slab by slab.

    The same geometry, rescale and header as the in-memory path; ``data`` is a dask
    array of one block per store z-chunk (:func:`~medpipe.io.dicom.slabs.lazy_planes`).
    """
    rels, frames, ds0 = headers.rels, headers.frames, headers.first

    def get0(keyword: str, default: Any = None) -> Any:
        with _quiet():
            return _get(ds0, keyword, rels[0], default)

    header: dict[str, Any] = basic_profile_filter(ds0)
    order, sz, pixel_spacing, origin, direction = stack_geometry(
        frames, rels, len(rels), tolerance, get0("SpacingBetweenSlices"), header
    )
    # The stored dtype, from the first plane (the in-memory path learns it by decoding).
    dtype = stored_dtype(root, rels[frames[order[0]].file])
    coder = _rescale(
        frames, order, np.empty((1, 1, 1, 1), dtype=dtype), get0, header, headers.datasets
    )
    if headers.monochrome1:
        _note_monochrome1(header, ds0, dtype, coder)
    data = lazy_planes(root, headers, order, coder)
    spacing = (float(sz), float(pixel_spacing[0]), float(pixel_spacing[1]))
    return _series(
        get0,
        rels,
        [rels[frames[k].file] for k in order],
        data=data,
        axes=("z", "y", "x"),
        spacing=spacing,
        origin=origin,
        direction=direction,
        coder=coder,
        header=header,
        dropped={},
        rejected={},
    )
