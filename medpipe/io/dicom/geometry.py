"""Slice geometry of a series: sort planes along the normal, check the stack is regular."""

from __future__ import annotations

from typing import Any

import numpy as np

from medpipe.errors import SeriesGeometryError
from medpipe.io.dicom.frames import _Frame


def _sort_geometry(
    frames: list[_Frame], rels: list[str], tolerance: float
) -> tuple[list[int], float, np.ndarray, np.ndarray, str]:
    """Order planes along the normal and check the stack is regular.

    Returns (order, z spacing, origin, direction rows, how z spacing was found).
    """
    iop0 = frames[0].iop
    assert iop0 is not None
    for f in frames:
        assert f.iop is not None
        if np.max(np.abs(f.iop - iop0)) > 1e-4:
            raise SeriesGeometryError(
                f"mixed orientation: ImageOrientationPatient {np.round(f.iop, 5).tolist()} "
                f"differs from {np.round(iop0, 5).tolist()}",
                path=rels[f.file],
            )
    row_cos = iop0[:3] / np.linalg.norm(iop0[:3])
    col_cos = iop0[3:] / np.linalg.norm(iop0[3:])
    normal = np.cross(row_cos, col_cos)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise SeriesGeometryError(
            "ImageOrientationPatient cosines are not orthonormal", path=rels[frames[0].file]
        )
    direction = np.stack([normal, col_cos, row_cos])
    pos = np.stack([f.ipp for f in frames])  # type: ignore[misc]
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    proj_s = proj[order]
    if len(frames) == 1:
        return [0], 0.0, pos[0], direction, ""
    diffs = np.diff(proj_s)
    if np.any(diffs <= 1e-6 * max(1.0, float(np.max(np.abs(proj_s))))) or np.any(diffs < 1e-4):
        k = int(np.argmin(diffs))
        raise SeriesGeometryError(
            f"duplicate slice position {proj_s[k]:.4f} mm along the normal ({len(frames)} planes)",
            path=rels[frames[int(order[k + 1])].file],
        )
    spacing = float((proj_s[-1] - proj_s[0]) / (len(proj_s) - 1))
    dev = np.abs(diffs - spacing) / spacing
    if np.max(dev) > tolerance:
        k = int(np.argmax(dev))
        ratio = diffs[k] / float(np.median(diffs))
        what = "missing slice" if ratio > 1.5 else "uneven slice spacing"
        raise SeriesGeometryError(
            f"{what}: gap of {diffs[k]:.4f} mm where the mean spacing is {spacing:.4f} mm "
            f"(relative deviation {dev[k]:.3g} > tolerance {tolerance})",
            path=rels[frames[int(order[k + 1])].file],
        )
    # The stack must run along the normal (no gantry tilt / shear).
    in_plane = pos[order] - pos[order[0]] - np.outer(proj_s - proj_s[0], normal)
    if np.max(np.linalg.norm(in_plane, axis=1)) > max(tolerance * spacing, 1e-3):
        raise SeriesGeometryError(
            "slices are not stacked along the slice normal (gantry tilt or shear); not resampled",
            path=rels[frames[0].file],
        )
    return [int(i) for i in order], spacing, pos[order[0]], direction, "ImagePositionPatient"


def stack_geometry(
    frames: list[_Frame],
    rels: list[str],
    n_files: int,
    tolerance: float,
    spacing_between: Any,
    header: dict[str, Any],
) -> tuple[list[int], float, tuple[float, float], np.ndarray, np.ndarray]:
    """Plane order and grid of a series; records how each part was found in ``header``.

    Parameters
    ----------
    frames
        Every plane of the series, in file order.
    rels
        Relative paths of the files (``frames[k].file`` indexes them).
    n_files
        Number of files (several files need positions to be ordered).
    tolerance
        Allowed relative deviation of each slice gap from the mean slice spacing.
    spacing_between
        SpacingBetweenSlices of the first file (a fall-back z spacing), or ``None``.
    header
        Updated with ``pixel_spacing_source``, ``z_spacing_source``, ``n_slices`` and,
        where they apply, ``geometry_source`` and ``frames_along_z``.

    Returns
    -------
    order, z spacing, pixel spacing (row, column), origin, direction rows
    """
    with_pos = [f.ipp is not None and f.iop is not None for f in frames]
    spacings = {f.spacing for f in frames}
    if len(spacings) > 1:
        raise SeriesGeometryError(
            f"mixed PixelSpacing in one series: {sorted(map(str, spacings))}", path=rels[0]
        )
    pixel_spacing = frames[0].spacing
    if pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        header["pixel_spacing_source"] = "unknown (1.0 mm assumed)"
    else:
        header["pixel_spacing_source"] = "PixelSpacing"

    if all(with_pos):
        order, sz, origin, direction, how = _sort_geometry(frames, rels, tolerance)
    elif any(with_pos):
        raise SeriesGeometryError(
            "some planes lack ImagePositionPatient/Orientation", path=rels[with_pos.index(False)]
        )
    elif n_files > 1:
        raise SeriesGeometryError(
            f"{n_files} files without ImagePositionPatient/Orientation: slice order unknown",
            path=rels[0],
        )
    else:
        order = list(range(len(frames)))
        sz, how = 0.0, ""
        origin = np.zeros(3)
        direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        header["geometry_source"] = "none (no ImagePositionPatient/Orientation)"
    if len(frames) == 1 or not how:
        if len(frames) > 1:
            header["frames_along_z"] = True
        for key, value in (
            ("SliceThickness", frames[0].thickness),
            ("SpacingBetweenSlices", spacing_between),
        ):
            if value is not None and float(value) > 0:
                sz, how = float(value), key
                break
        else:
            sz, how = 1.0, "default (1.0 mm)"
    header["z_spacing_source"] = how
    header["n_slices"] = len(frames)
    return order, sz, pixel_spacing, origin, direction
