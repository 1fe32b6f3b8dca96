"""RTSTRUCT → voxel masks on the grid of the referenced image series.

Each ROI's ``CLOSED_PLANAR`` contours are mapped from patient space (LPS, mm) into
the image's voxel index space through its origin, direction and spacing, and filled
slice by slice (pixel centres inside the polygon).  Several contours on one slice
combine with XOR (even-odd), so an inner contour cuts a hole.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from medpipe.errors import InvalidSourceError, SeriesGeometryError
from medpipe.io.base import Series

__all__ = ["rasterize_rtstruct", "sanitize_roi_name", "unique_name"]

_RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
#: How far (in slices) a contour plane may sit from the nearest image plane.
_PLANE_TOLERANCE = 0.1


def sanitize_roi_name(name: str) -> str:
    """ROI name restricted to ``[A-Za-z0-9_.-]`` (other characters become ``_``).

    Parameters
    ----------
    name
        The ROI Name from the structure set.

    Returns
    -------
    str
        A non-empty, path-safe name.
    """
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip())
    clean = clean.strip(".") or "roi"
    return clean


def unique_name(name: str, taken: Collection[str]) -> str:
    """``name``, or ``name_2``, ``name_3``… : the first one not in ``taken``.

    Parameters
    ----------
    name
        The wanted label name.
    taken
        Names already given.

    Returns
    -------
    str
        A name not in ``taken`` (two masks of one name are both kept).
    """
    key, n = name, 2
    while key in taken:
        key, n = f"{name}_{n}", n + 1
    return key


def _world_to_index(image: Series) -> tuple[np.ndarray, np.ndarray]:
    """(inverse matrix, origin) mapping LPS mm to fractional (z, y, x) indices."""
    spacing = np.asarray(image.spacing, dtype=np.float64)
    if spacing.size == 2:  # single-plane colour image: (y, x) spacing only
        spacing = np.concatenate([[1.0], spacing])
    direction = np.asarray(image.direction, dtype=np.float64)
    # Column a of the forward matrix is the LPS step of one voxel along axis a.
    forward = (direction * spacing[:, None]).T
    return np.linalg.inv(forward), np.asarray(image.origin, dtype=np.float64)


_CONTOUR_DATA = 0x30060050


#: Vertex tolerance of the crossing test (as in scikit-image's ``point_in_polygon``).
_VERTEX_EPS = 1e-12
#: Bound on the (crossing x column) work arrays of one block of rows.
_FILL_BLOCK = 1 << 21


def _fill_polygon(r: np.ndarray, c: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``shape`` plane inside a polygon or on its boundary.

    Exactly the pixels of ``skimage.draw.polygon(r, c, shape)``: the same bounding box
    and clipping, and the same test per pixel centre (O'Rourke's crossing count: a
    pixel is drawn when it is inside, on an edge or on a vertex), with the same
    floating-point operations.  skimage runs that test against every edge for every
    pixel of the box; here only the edges that straddle a pixel row are tested, for
    the whole row at once.

    Parameters
    ----------
    r, c
        Row and column coordinates of the vertices.
    shape
        ``(rows, cols)`` of the plane.

    Returns
    -------
    numpy.ndarray
        Boolean plane of ``shape``.
    """
    ny, nx = shape
    plane = np.zeros((ny, nx), dtype=bool)
    r = np.ascontiguousarray(r, dtype=np.float64)
    c = np.ascontiguousarray(c, dtype=np.float64)
    minr, maxr = int(max(0, r.min())), min(ny - 1, int(math.ceil(r.max())))
    minc, maxc = int(max(0, c.min())), min(nx - 1, int(math.ceil(c.max())))
    if minr > maxr or minc > maxc:
        return plane
    ys = np.arange(minr, maxr + 1, dtype=np.float64)
    xs = np.arange(minc, maxc + 1, dtype=np.float64)
    rj, cj = np.roll(r, 1), np.roll(c, 1)  # edge i runs from vertex i-1 to vertex i
    y0 = r - ys[:, None]  # (rows, edges), vertex i relative to the row
    y1 = rj - ys[:, None]
    # Edges straddling the row, for the rightward and the leftward ray of a pixel.
    right = (y0 > 0) != (y1 > 0)
    left = (y0 < 0) != (y1 < 0)
    row, edge = np.nonzero(right | left)  # row-major: grouped by row
    # Parities of the crossings of each pixel's rightward and leftward ray; a pixel
    # is drawn when either is odd (both odd: inside; one odd: on an edge).
    par_r = np.zeros((ys.size, xs.size), dtype=np.uint8)
    par_l = np.zeros_like(par_r)
    if row.size:
        # Rows in blocks so the (crossing, column) arrays stay bounded.
        per_block = max(1, _FILL_BLOCK // xs.size)
        for lo in range(0, row.size, per_block):
            rr, ee = row[lo : lo + per_block], edge[lo : lo + per_block]
            a0, a1 = y0[rr, ee][:, None], y1[rr, ee][:, None]
            x0 = c[ee][:, None] - xs
            x1 = cj[ee][:, None] - xs
            cross = (x0 * a1 - x1 * a0) / (a1 - a0)
            odd_r = (right[rr, ee][:, None] & (cross > 0)).view(np.uint8)
            odd_l = (left[rr, ee][:, None] & (cross < 0)).view(np.uint8)
            starts = np.flatnonzero(np.r_[True, rr[1:] != rr[:-1]])
            par_r[rr[starts]] ^= np.bitwise_xor.reduceat(odd_r, starts, axis=0)
            par_l[rr[starts]] ^= np.bitwise_xor.reduceat(odd_l, starts, axis=0)
    plane[minr : maxr + 1, minc : maxc + 1] = (par_r | par_l).view(bool)
    # A pixel centre on a vertex is drawn too.
    on_r, on_c = np.round(r), np.round(c)
    at = (np.abs(r - on_r) < _VERTEX_EPS) & (np.abs(c - on_c) < _VERTEX_EPS)
    at &= (on_r >= minr) & (on_r <= maxr) & (on_c >= minc) & (on_c <= maxc)
    plane[on_r[at].astype(np.intp), on_c[at].astype(np.intp)] = True
    return plane


def _contour_points(contour: pydicom.Dataset) -> np.ndarray:
    """ContourData as floats, parsed from the raw bytes when possible.

    pydicom turns each of the (often tens of thousands of) DS strings into a validated
    ``DSfloat``; parsing the backslash-separated text directly is ~20x faster.
    """
    raw = contour.get_item(_CONTOUR_DATA)
    value = getattr(raw, "value", None)
    if isinstance(value, bytes):
        return np.array(value.replace(b"\\", b" ").split(), dtype=np.float64)
    return np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)


def rasterize_rtstruct(root: Path, rel: str, image: Series) -> dict[str, np.ndarray]:
    """Rasterise every ROI of an RTSTRUCT onto ``image``'s grid.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the RTSTRUCT file.
    image
        The referenced image series (its geometry defines the grid).

    Returns
    -------
    dict
        ``sanitised ROI name -> uint8 mask`` of ``image.spatial_shape`` (1 inside).
        ROIs without closed planar contours are left out.

    Raises
    ------
    InvalidSourceError
        The file is unreadable or not an RTSTRUCT.
    SeriesGeometryError
        The structure set uses another frame of reference, or a contour does not
        lie on a slice plane of the image.
    """
    path = Path(root) / rel
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # One read of the file, then parsing from memory (pydicom's many small reads
            # of a file cost more than the parse itself for structure sets).
            ds = pydicom.dcmread(io.BytesIO(path.read_bytes()))
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        line = " ".join(str(exc).split())[:200]
        raise InvalidSourceError(f"unreadable RTSTRUCT: {line}", path=rel) from None
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop != _RTSTRUCT_SOP and ds.get("Modality") != "RTSTRUCT":
        raise InvalidSourceError("not an RTSTRUCT", path=rel)

    try:
        rois = {
            int(item.ROINumber): (
                str(item.get("ROIName", "") or f"roi_{item.ROINumber}"),
                str(item.get("ReferencedFrameOfReferenceUID", "") or ""),
            )
            for item in ds.get("StructureSetROISequence", []) or []
        }
        contours = [
            (int(item.ReferencedROINumber), list(item.get("ContourSequence", []) or []))
            for item in ds.get("ROIContourSequence", []) or []
        ]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidSourceError(f"malformed structure set: {exc}", path=rel) from None

    shape = image.spatial_shape
    if len(shape) == 2:
        shape = (1, *shape)
    nz, ny, nx = shape
    inv, origin = _world_to_index(image)
    out: dict[str, np.ndarray] = {}
    for number, items in contours:
        name, for_uid = rois.get(number, (f"roi_{number}", ""))
        if for_uid and image.frame_of_reference_uid and for_uid != image.frame_of_reference_uid:
            raise SeriesGeometryError(
                f"ROI {sanitize_roi_name(name)!r} uses another frame of reference than the image",
                path=rel,
            )
        mask = np.zeros(shape, dtype=np.uint8)
        n_closed = 0
        for contour in items:
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            try:
                pts = _contour_points(contour)
            except (AttributeError, TypeError, ValueError) as exc:
                raise InvalidSourceError(f"bad ContourData: {exc}", path=rel) from None
            if pts.size < 9 or pts.size % 3:
                raise InvalidSourceError("ContourData is not a list of >= 3 points", path=rel)
            idx = (pts.reshape(-1, 3) - origin) @ inv.T  # (n, 3) fractional (z, y, x)
            k = np.round(idx[:, 0])
            if np.any(np.abs(idx[:, 0] - k) > _PLANE_TOLERANCE) or np.any(k != k[0]):
                raise SeriesGeometryError(
                    f"ROI {sanitize_roi_name(name)!r}: a contour does not lie on a slice "
                    "plane of the image",
                    path=rel,
                )
            kz = int(k[0])
            if not 0 <= kz < nz:
                raise SeriesGeometryError(
                    f"ROI {sanitize_roi_name(name)!r}: a contour lies outside the image "
                    f"(slice index {kz} of {nz})",
                    path=rel,
                )
            mask[kz] ^= _fill_polygon(idx[:, 1], idx[:, 2], (ny, nx)).view(np.uint8)
            n_closed += 1
        if n_closed == 0:
            continue
        key = unique_name(sanitize_roi_name(name), out)
        if len(image.spatial_shape) == 2:
            mask = mask[0]
        out[key] = mask
    return out
