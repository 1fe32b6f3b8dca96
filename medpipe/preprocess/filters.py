"""Smoothing and edge filters with their scales in millimetres.

Every function mirrors a ``scipy.ndimage`` (or ``skimage.filters``) call on the whole
array: the scale in mm is turned into a per-axis scale in voxels from
``image.attrs["spacing"]``, the halo is derived from it, and the filter runs block-wise with
``map_overlap(boundary="none")`` and the filter's own ``mode`` (``boundary="periodic"`` for
the periodic modes ``wrap`` and ``grid-wrap``), so the result is bit-identical to the
whole-array call.  Integer input is filtered as float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from medpipe.errors import ConfigError
from medpipe.preprocess import _kernels
from medpipe.preprocess._core import (
    WRAP_MODES,
    BlockOp,
    as_dask,
    check_image,
    check_mode,
    float_dtype,
    overlap_apply,
    per_axis_mm,
    rewrap,
    run_op,
)
from medpipe.preprocess._kernels import ellipsoid_footprint

__all__ = [
    "gaussian",
    "gaussian_op",
    "median",
    "median_op",
    "difference_of_gaussians",
    "laplacian_of_gaussian",
    "sigma_voxels",
    "gaussian_radius",
]


def sigma_voxels(
    sigma_mm: float | Sequence[float], spacing: Sequence[float]
) -> tuple[float, ...]:
    """Per-axis sigma in voxels: ``sigma_mm / spacing``."""
    mm = per_axis_mm(sigma_mm, len(spacing), "sigma_mm")
    return tuple(m / s for m, s in zip(mm, spacing, strict=True))


def gaussian_radius(sigma: Sequence[float], truncate: float) -> tuple[int, ...]:
    """The kernel radius scipy uses per axis: ``int(truncate * sigma + 0.5)``."""
    return tuple(int(truncate * float(s) + 0.5) for s in sigma)


def _check_truncate(truncate: float) -> float:
    if not (np.isfinite(truncate) and truncate > 0):
        raise ConfigError(f"truncate must be positive, got {truncate}")
    return float(truncate)


def gaussian(
    image: xr.DataArray,
    *,
    sigma_mm: float | Sequence[float],
    truncate: float = 4.0,
    mode: str = "reflect",
    cval: float = 0.0,
) -> xr.DataArray:
    """Gaussian smoothing with sigma in millimetres.

    Parameters
    ----------
    image
        Dask-backed image, dims ``("z","y","x")`` or ``("y","x")``, ``attrs["spacing"]`` in mm.
    sigma_mm
        Standard deviation in mm, one value or one per dim.
    truncate
        Kernel half-width in sigmas, as in :func:`scipy.ndimage.gaussian_filter`.
    mode, cval
        Boundary handling at the array edge, as in scipy.

    Returns
    -------
    xarray.DataArray
        Lazy result, equal to ``scipy.ndimage.gaussian_filter(x, sigma_mm / spacing, ...)``
        on the whole array (float32 for integer input).
    """
    return run_op(image, gaussian_op(image, image.dtype, sigma_mm=sigma_mm,
                                     truncate=truncate, mode=mode, cval=cval))


def gaussian_op(
    image: xr.DataArray,
    dtype: np.dtype,
    *,
    sigma_mm: float | Sequence[float],
    truncate: float = 4.0,
    mode: str = "reflect",
    cval: float = 0.0,
) -> BlockOp:
    """The block-wise form of :func:`gaussian` for input of ``dtype`` (for chaining)."""
    spacing = check_image(image)
    sigma = sigma_voxels(sigma_mm, spacing)
    truncate = _check_truncate(truncate)
    check_mode(mode)
    out = float_dtype(dtype)
    return BlockOp(_kernels.gaussian_block, gaussian_radius(sigma, truncate), out, out,
                   {"sigma": sigma, "truncate": truncate, "mode": mode, "cval": cval})


def difference_of_gaussians(
    image: xr.DataArray,
    *,
    low_mm: float | Sequence[float],
    high_mm: float | Sequence[float],
    truncate: float = 4.0,
    mode: str = "nearest",
    cval: float = 0.0,
) -> xr.DataArray:
    """Band-pass: Gaussian at ``low_mm`` minus Gaussian at ``high_mm``.

    Equals :func:`skimage.filters.difference_of_gaussians` on the whole (float) array with
    ``low_sigma = low_mm / spacing`` and ``high_sigma = high_mm / spacing``; ``mode``
    defaults to skimage's ``"nearest"``.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    low_mm, high_mm
        The two sigmas in mm (scalar or per dim); every ``high_mm`` must be >= ``low_mm``.
    truncate, mode, cval
        As in :func:`gaussian`.

    Returns
    -------
    xarray.DataArray
        Lazy float result.
    """
    spacing = check_image(image)
    low = sigma_voxels(low_mm, spacing)
    high = sigma_voxels(high_mm, spacing)
    if any(h < lo for h, lo in zip(high, low, strict=True)):
        raise ConfigError(f"high_mm must be >= low_mm on every axis, got {low_mm}, {high_mm}")
    truncate = _check_truncate(truncate)
    check_mode(mode)
    dtype = float_dtype(image.dtype)
    depth = [max(a, b) for a, b in zip(gaussian_radius(low, truncate),
                                       gaussian_radius(high, truncate), strict=True)]
    out = overlap_apply(
        as_dask(image).astype(dtype),
        _kernels.dog_block,
        depth,
        dtype=dtype,
        periodic=mode in WRAP_MODES,
        low=low,
        high=high,
        truncate=truncate,
        mode=mode,
        cval=cval,
    )
    return rewrap(image, out)


def laplacian_of_gaussian(
    image: xr.DataArray,
    *,
    sigma_mm: float | Sequence[float],
    truncate: float = 4.0,
    mode: str = "reflect",
    cval: float = 0.0,
) -> xr.DataArray:
    """Laplacian of Gaussian with sigma in millimetres.

    Equals :func:`scipy.ndimage.gaussian_laplace` on the whole array with
    ``sigma = sigma_mm / spacing``.  As in scipy, the second derivatives are per voxel
    (not per mm²) and not scale-normalised; multiply by ``sigma**2`` for a normalised LoG.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    sigma_mm
        Standard deviation in mm (scalar or per dim), > 0.
    truncate, mode, cval
        As in :func:`gaussian`.

    Returns
    -------
    xarray.DataArray
        Lazy float result.
    """
    spacing = check_image(image)
    sigma = sigma_voxels(sigma_mm, spacing)
    if not all(s > 0 for s in sigma):
        raise ConfigError(f"sigma_mm must be > 0 for a Laplacian of Gaussian, got {sigma_mm}")
    truncate = _check_truncate(truncate)
    check_mode(mode)
    dtype = float_dtype(image.dtype)
    out = overlap_apply(
        as_dask(image).astype(dtype),
        _kernels.log_block,
        gaussian_radius(sigma, truncate),
        dtype=dtype,
        periodic=mode in WRAP_MODES,
        sigma=sigma,
        truncate=truncate,
        mode=mode,
        cval=cval,
    )
    return rewrap(image, out)


def median(
    image: xr.DataArray,
    *,
    radius_mm: float,
    mode: str = "reflect",
    cval: float = 0.0,
) -> xr.DataArray:
    """Median filter over an ellipsoid of radius ``radius_mm``.

    The footprint (:func:`medpipe.preprocess.footprint`) holds the voxels whose centres lie
    within ``radius_mm`` of the centre voxel, measured with the image spacing; its half-extent
    per axis is ``floor(radius_mm / spacing)`` voxels.  A radius below one voxel spacing on
    an axis means no filtering along that axis; e.g. 1 mm on 0.98×0.98×3.27 mm CT is an
    in-plane 3×3 cross.  For a classic 3×3×3 median use a box via scipy directly.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    radius_mm
        Footprint radius in mm, >= 0.
    mode, cval
        Boundary handling, as in :func:`scipy.ndimage.median_filter`.

    Returns
    -------
    xarray.DataArray
        Lazy result with the input dtype, equal to
        ``scipy.ndimage.median_filter(x, footprint=footprint(radius_mm, spacing), mode=mode)``.
    """
    return run_op(image, median_op(image, image.dtype, radius_mm=radius_mm, mode=mode,
                                   cval=cval))


def median_op(
    image: xr.DataArray,
    dtype: np.dtype,
    *,
    radius_mm: float,
    mode: str = "reflect",
    cval: float = 0.0,
) -> BlockOp:
    """The block-wise form of :func:`median` for input of ``dtype`` (for chaining)."""
    spacing = check_image(image)
    (radius,) = per_axis_mm(radius_mm, 1, "radius_mm")
    check_mode(mode)
    fp = ellipsoid_footprint(radius, spacing)
    dtype = np.dtype(dtype)
    return BlockOp(_kernels.median_block, tuple(s // 2 for s in fp.shape), dtype, dtype,
                   {"footprint": fp, "mode": mode, "cval": cval})
