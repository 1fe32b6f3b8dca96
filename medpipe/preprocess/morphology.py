"""Grey and binary morphology with an ellipsoid footprint whose radius is in millimetres.

Grey operations mirror ``scipy.ndimage.grey_opening``/``grey_closing``/``white_tophat``/
``black_tophat`` with ``footprint=footprint(radius_mm, spacing)``; binary ones mirror
``scipy.ndimage.binary_opening``/``binary_closing`` with ``structure=footprint(...)``.
Binary variants are separate functions (``binary_opening``, ``binary_closing``), as in
scipy: they take any array (non-zero is foreground), return ``bool`` and treat the outside
of the array as ``border_value`` instead of a ``mode``.

Opening and closing are two passes (erosion and dilation), so the halo is twice the
footprint's half-extent per axis (times ``iterations`` for binary operations).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from medpipe.errors import ConfigError
from medpipe.preprocess import _kernels
from medpipe.preprocess._core import (
    BlockOp,
    as_dask,
    check_image,
    check_mode,
    overlap_apply,
    rewrap,
    run_op,
)
from medpipe.preprocess._kernels import ellipsoid_footprint

__all__ = [
    "footprint",
    "opening",
    "closing",
    "white_tophat",
    "black_tophat",
    "grey_op",
    "binary_opening",
    "binary_closing",
]


def footprint(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid footprint of radius ``radius_mm`` on a grid of ``spacing`` (mm).

    A voxel is in the footprint when its centre is within ``radius_mm`` of the centre voxel.
    Its half-extent per axis is ``floor(radius_mm / spacing)`` voxels, so its shape is odd
    and it is symmetric.  With unit isotropic spacing and an integer radius it equals
    ``skimage.morphology.ball`` (3D) or ``disk`` (2D).

    Parameters
    ----------
    radius_mm
        Radius in mm, >= 0 (0 gives a single voxel).
    spacing
        Voxel spacing in mm, one per axis.

    Returns
    -------
    numpy.ndarray
        Boolean footprint with ``len(spacing)`` dims.
    """
    if not (np.isfinite(radius_mm) and radius_mm >= 0):
        raise ConfigError(f"radius_mm must be finite and >= 0, got {radius_mm}")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ConfigError(f"spacing must be positive, got {spacing}")
    return ellipsoid_footprint(float(radius_mm), [float(s) for s in spacing])


def _grey(op: str, image: xr.DataArray, radius_mm: float, mode: str, cval: float) -> xr.DataArray:
    return run_op(image, grey_op(op, image, image.dtype, radius_mm=radius_mm, mode=mode,
                                 cval=cval))


def grey_op(
    op: str,
    image: xr.DataArray,
    dtype: np.dtype,
    *,
    radius_mm: float,
    mode: str = "reflect",
    cval: float = 0.0,
) -> BlockOp:
    """The block-wise form of a grey morphology ``op`` (``opening``, ``closing``,
    ``white_tophat``, ``black_tophat``) for input of ``dtype`` (for chaining)."""
    spacing = check_image(image)
    check_mode(mode)
    fp = footprint(radius_mm, spacing)
    dtype = np.dtype(dtype)
    # two passes (erosion and dilation): twice the footprint's half-extent
    return BlockOp(_kernels.grey_block, tuple(2 * (s // 2) for s in fp.shape), dtype, dtype,
                   {"op": op, "footprint": fp, "mode": mode, "cval": cval})


def opening(
    image: xr.DataArray, *, radius_mm: float, mode: str = "reflect", cval: float = 0.0
) -> xr.DataArray:
    """Grey opening (erosion then dilation) with an ellipsoid of radius ``radius_mm``.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    mode, cval
        Boundary handling, as in :func:`scipy.ndimage.grey_opening`.

    Returns
    -------
    xarray.DataArray
        Lazy result equal to ``scipy.ndimage.grey_opening(x, footprint=fp, mode=mode)``.
    """
    return _grey("opening", image, radius_mm, mode, cval)


def closing(
    image: xr.DataArray, *, radius_mm: float, mode: str = "reflect", cval: float = 0.0
) -> xr.DataArray:
    """Grey closing (dilation then erosion) with an ellipsoid of radius ``radius_mm``.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    mode, cval
        Boundary handling, as in :func:`scipy.ndimage.grey_closing`.

    Returns
    -------
    xarray.DataArray
        Lazy result equal to ``scipy.ndimage.grey_closing(x, footprint=fp, mode=mode)``.
    """
    return _grey("closing", image, radius_mm, mode, cval)


def white_tophat(
    image: xr.DataArray, *, radius_mm: float, mode: str = "reflect", cval: float = 0.0
) -> xr.DataArray:
    """White top-hat (image minus its opening): bright details smaller than the footprint.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    mode, cval
        Boundary handling, as in :func:`scipy.ndimage.white_tophat`.

    Returns
    -------
    xarray.DataArray
        Lazy result equal to ``scipy.ndimage.white_tophat(x, footprint=fp, mode=mode)``.
    """
    return _grey("white_tophat", image, radius_mm, mode, cval)


def black_tophat(
    image: xr.DataArray, *, radius_mm: float, mode: str = "reflect", cval: float = 0.0
) -> xr.DataArray:
    """Black top-hat (closing minus image): dark details smaller than the footprint.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    mode, cval
        Boundary handling, as in :func:`scipy.ndimage.black_tophat`.

    Returns
    -------
    xarray.DataArray
        Lazy result equal to ``scipy.ndimage.black_tophat(x, footprint=fp, mode=mode)``.
    """
    return _grey("black_tophat", image, radius_mm, mode, cval)


def _binary(
    op: str, image: xr.DataArray, radius_mm: float, iterations: int, border_value: int
) -> xr.DataArray:
    spacing = check_image(image)
    if int(iterations) != iterations or iterations < 1:
        raise ConfigError(f"iterations must be an integer >= 1, got {iterations}")
    if border_value not in (0, 1):
        raise ConfigError(f"border_value must be 0 or 1, got {border_value}")
    fp = footprint(radius_mm, spacing)
    passes = 2 if op in ("opening", "closing") else 1
    depth = [passes * int(iterations) * (s // 2) for s in fp.shape]
    out = overlap_apply(
        as_dask(image),
        _kernels.binary_block,
        depth,
        dtype=bool,
        op=op,
        structure=fp,
        iterations=int(iterations),
        border_value=int(border_value),
    )
    return rewrap(image, out)


def binary_opening(
    image: xr.DataArray, *, radius_mm: float, iterations: int = 1, border_value: int = 0
) -> xr.DataArray:
    """Binary opening of a mask (non-zero = foreground) with an ellipsoid footprint.

    Parameters
    ----------
    image
        Dask-backed mask with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    iterations
        Erosions then as many dilations, as in :func:`scipy.ndimage.binary_opening`.
    border_value
        Value assumed outside the array (scipy's default 0).

    Returns
    -------
    xarray.DataArray
        Lazy boolean mask equal to ``scipy.ndimage.binary_opening(x != 0, structure=fp, ...)``.
    """
    return _binary("opening", image, radius_mm, iterations, border_value)


def binary_closing(
    image: xr.DataArray, *, radius_mm: float, iterations: int = 1, border_value: int = 0
) -> xr.DataArray:
    """Binary closing of a mask (non-zero = foreground) with an ellipsoid footprint.

    As in scipy, ``border_value=0`` lets the final erosion eat into foreground that touches
    the array edge; pad the mask first if that matters.

    Parameters
    ----------
    image
        Dask-backed mask with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm (see :func:`footprint`).
    iterations
        Dilations then as many erosions, as in :func:`scipy.ndimage.binary_closing`.
    border_value
        Value assumed outside the array (scipy's default 0).

    Returns
    -------
    xarray.DataArray
        Lazy boolean mask equal to ``scipy.ndimage.binary_closing(x != 0, structure=fp, ...)``.
    """
    return _binary("closing", image, radius_mm, iterations, border_value)
