"""Resampling to an isotropic grid, block by block on the output grid."""

from __future__ import annotations

import itertools
import math

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage as ndi

from medpipe.errors import ConfigError
from medpipe.preprocess._core import as_dask, check_image, check_mode, float_dtype

__all__ = ["resample_isotropic", "output_shape"]

#: Extra input voxels read around each output block's footprint (orders 0 and 1 need 1).
_MARGIN = 2


def output_shape(shape: tuple[int, ...], spacing: tuple[float, ...], spacing_mm: float
                 ) -> tuple[int, ...]:
    """Output voxels per axis: the grid from voxel 0 that stays inside the input extent."""
    return tuple(
        int(math.floor((n - 1) * s / spacing_mm + 1e-9)) + 1 for n, s in zip(shape, spacing,
                                                                           strict=True)
    )


def _axis_coords(n_out: int, ratio: float) -> np.ndarray:
    # Input index of each output voxel; the same float64 product scipy's affine_transform
    # forms for a diagonal matrix (ratio * j + 0).
    return np.arange(n_out, dtype=np.float64) * ratio


def _interp_block(
    block: np.ndarray,
    coords: tuple[np.ndarray, ...],
    starts: tuple[int, ...],
    order: int,
    mode: str,
    cval: float,
    dtype: np.dtype,
) -> np.ndarray:
    local = [c - s for c, s in zip(coords, starts, strict=True)]
    grid = np.meshgrid(*local, indexing="ij", sparse=False)
    out = ndi.map_coordinates(
        block, np.stack(grid), order=order, mode=mode, cval=cval, prefilter=False,
        output=dtype,
    )
    return out


def resample_isotropic(
    image: xr.DataArray,
    *,
    spacing_mm: float,
    order: int = 1,
    mode: str = "nearest",
    cval: float = 0.0,
) -> xr.DataArray:
    """Resample onto an isotropic grid of ``spacing_mm`` with the same origin.

    Output voxel ``j`` along an axis sits at ``j * spacing_mm`` from the input's voxel 0,
    i.e. at input index ``j * spacing_mm / spacing``; the output covers the input extent
    (``floor((n - 1) * spacing / spacing_mm) + 1`` voxels), so voxel 0 keeps its physical
    position and ``attrs["origin"]``/``direction`` stay valid.  Each output block reads only
    the input region it needs (plus a 2-voxel margin), so the result equals
    ``scipy.ndimage.map_coordinates(x, coords, order=order, mode=mode)`` (and
    ``scipy.ndimage.affine_transform`` with the diagonal matrix) on the whole array.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    spacing_mm
        Target spacing in mm, > 0.
    order
        0 (nearest neighbour; use for masks and labels, dtype is kept) or 1 (linear; float
        output, float32 for integer input).  Higher spline orders need a global prefilter and
        are not offered.
    mode, cval
        Boundary handling of :func:`scipy.ndimage.map_coordinates` (only reached at the last
        voxel, where the linear weight of the outside neighbour is 0).

    Returns
    -------
    xarray.DataArray
        Lazy result with ``attrs["spacing"]`` set to ``spacing_mm`` on every axis; dim coords,
        where present, continue from their first value with the new step.
    """
    spacing = check_image(image)
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise ConfigError(f"spacing_mm must be > 0, got {spacing_mm}")
    if order not in (0, 1):
        raise ConfigError(f"order must be 0 (nearest, masks) or 1 (linear), got {order}")
    check_mode(mode)
    arr = as_dask(image)
    dtype = arr.dtype if order == 0 else float_dtype(arr.dtype)
    shape_out = output_shape(arr.shape, spacing, float(spacing_mm))
    ratios = [float(spacing_mm) / s for s in spacing]
    # Output chunks: roughly as many voxels per block as the input's largest chunk.
    out_chunks = []
    for n_in_chunk, r, n_out in zip(
        (max(c) for c in arr.chunks), ratios, shape_out, strict=True
    ):
        size = max(1, min(n_out, int(round(n_in_chunk / r))))
        out_chunks.append(da.core.normalize_chunks(size, (n_out,))[0])
    coords_all = [_axis_coords(n, r) for n, r in zip(shape_out, ratios, strict=True)]

    offsets = [np.concatenate([[0], np.cumsum(c)]) for c in out_chunks]
    blocks = np.empty(tuple(len(c) for c in out_chunks), dtype=object)
    for idx in itertools.product(*(range(len(c)) for c in out_chunks)):
        coords, in_slices, starts, shape_blk = [], [], [], []
        for ax, i in enumerate(idx):
            c = coords_all[ax][offsets[ax][i] : offsets[ax][i + 1]]
            lo = max(0, int(np.floor(c[0])) - _MARGIN)
            hi = min(arr.shape[ax], int(np.floor(c[-1])) + 1 + _MARGIN)
            coords.append(c)
            in_slices.append(slice(lo, hi))
            starts.append(lo)
            shape_blk.append(len(c))
        sub = arr[tuple(in_slices)]
        # The input region may span several input chunks: delayed passes it as one array.
        task = dask.delayed(_interp_block, pure=True)(
            sub, tuple(coords), tuple(starts), order, mode, cval, dtype
        )
        blocks[idx] = da.from_delayed(task, shape=tuple(shape_blk), dtype=dtype)
    out = da.block(blocks.tolist())

    new_coords = {}
    for name, coord in image.coords.items():
        if name in image.dims and coord.ndim == 1 and coord.size >= 1:
            ax = image.dims.index(name)
            step = (float(coord[1] - coord[0]) if coord.size > 1 else spacing[ax]) * ratios[ax]
            new_coords[name] = float(coord[0]) + step * np.arange(shape_out[ax])
        elif not set(coord.dims) & set(image.dims):
            new_coords[name] = coord
    attrs = dict(image.attrs)
    attrs["spacing"] = [float(spacing_mm)] * image.ndim
    return xr.DataArray(out, dims=image.dims, coords=new_coords, attrs=attrs, name=image.name)
