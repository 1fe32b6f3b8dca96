"""Shared plumbing: image validation, spacing, halo handling and re-wrapping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from medpipe.errors import ConfigError

_VALID_DIMS = (("z", "y", "x"), ("y", "x"))
#: scipy.ndimage boundary modes accepted by the filters.
MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "grid-constant", "grid-mirror",
         "grid-wrap")
#: The periodic modes: scipy's filters extend the array with its other end (both are
#: ``a b c d | a b c d``), so on a chunked axis the halo of an edge block must come from
#: the opposite end of the array (``map_overlap(boundary="periodic")``).
WRAP_MODES = ("wrap", "grid-wrap")


def check_image(image: xr.DataArray) -> tuple[float, ...]:
    """Validate the image contract and return its spacing (mm, in dim order)."""
    if not isinstance(image, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(image).__name__}")
    if tuple(image.dims) not in _VALID_DIMS:
        raise ConfigError(f"image dims must be ('z','y','x') or ('y','x'), got {image.dims}")
    spacing = image.attrs.get("spacing")
    if spacing is None or len(spacing) != image.ndim:
        raise ConfigError(
            f"image.attrs['spacing'] must list {image.ndim} floats (mm), got {spacing!r}"
        )
    sp = tuple(float(s) for s in spacing)
    if not all(np.isfinite(s) and s > 0 for s in sp):
        raise ConfigError(f"spacing must be positive and finite, got {sp}")
    return sp


def as_dask(image: xr.DataArray) -> da.Array:
    """The image's data as a dask array (wrapping numpy data in a single chunk)."""
    data = image.data
    if isinstance(data, da.Array):
        return data
    return da.from_array(np.asarray(data), chunks=-1)


def per_axis_mm(value: float | Sequence[float], ndim: int, name: str) -> tuple[float, ...]:
    """A scalar or per-axis length in mm, validated to be finite and >= 0."""
    if np.isscalar(value):
        vals = (float(value),) * ndim  # type: ignore[arg-type]
    else:
        vals = tuple(float(v) for v in value)  # type: ignore[union-attr]
        if len(vals) != ndim:
            raise ConfigError(f"{name} needs 1 or {ndim} values, got {len(vals)}")
    if not all(np.isfinite(v) and v >= 0 for v in vals):
        raise ConfigError(f"{name} must be finite and >= 0, got {vals}")
    return vals


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def merge_small_chunks(chunks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Merge neighbouring chunks so that each is at least ``depth`` long.

    ``map_overlap`` takes its halo from the neighbouring chunk only, so a chunk shorter
    than the halo would leave the halo short.  Chunks are merged greedily left to right; a
    short tail is merged into its left neighbour.  The total is unchanged.
    """
    if depth <= 0 or min(chunks) >= depth:
        return chunks
    out: list[int] = []
    acc = 0
    for c in chunks:
        acc += c
        if acc >= depth:
            out.append(acc)
            acc = 0
    if acc:
        if out:
            out[-1] += acc
        else:
            out.append(acc)
    return tuple(out)


def overlap_apply(
    arr: da.Array,
    func: Callable[..., np.ndarray],
    depth: Sequence[int],
    *,
    dtype: Any,
    periodic: bool = False,
    **kwargs: Any,
) -> da.Array:
    """``map_overlap`` after making every chunk >= its halo.

    With ``boundary='none'`` a block on the array edge gets no artificial padding, so the
    filter's own ``mode`` handles the true edge exactly as scipy does on the whole array,
    and interior blocks see real neighbours over the full halo.  An axis held in a single
    chunk needs no halo at all.

    ``periodic=True`` (the filter's mode is one of :data:`WRAP_MODES`) uses
    ``boundary='periodic'`` instead: the edge blocks get their halo from the opposite
    end of the array, which is what scipy's ``wrap`` extension puts there, so the
    result again equals the whole-array call.
    """
    depth = [int(d) for d in depth]
    new_chunks = tuple(
        merge_small_chunks(c, d) for c, d in zip(arr.chunks, depth, strict=True)
    )
    if new_chunks != arr.chunks:
        arr = arr.rechunk(new_chunks)
    depth = [0 if len(c) == 1 else d for c, d in zip(arr.chunks, depth, strict=True)]
    meta = np.empty((0,) * arr.ndim, dtype=dtype)
    if not any(depth):
        return arr.map_blocks(func, dtype=dtype, meta=meta, **kwargs)
    return arr.map_overlap(
        func,
        depth=tuple(depth),
        boundary="periodic" if periodic else "none",
        trim=True,
        dtype=dtype,
        meta=meta,
        **kwargs,
    )


@dataclass(frozen=True)
class BlockOp:
    """One block-wise filter: its kernel, halo and dtypes, ready to chain with others.

    ``in_dtype`` is what the input is cast to first (float32 for integer input to a
    Gaussian), ``dtype`` what the kernel returns.
    """

    func: Callable[..., np.ndarray]
    depth: tuple[int, ...]
    in_dtype: np.dtype
    dtype: np.dtype
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def periodic(self) -> bool:
        """Whether the filter extends the array periodically (a mode in :data:`WRAP_MODES`)."""
        return self.kwargs.get("mode") in WRAP_MODES


def chain_block(block: np.ndarray, *, ops: Sequence[BlockOp]) -> np.ndarray:
    """Run ``ops`` one after the other on one block (with its halo)."""
    for op in ops:
        block = op.func(block.astype(op.in_dtype, copy=False), **op.kwargs)
    return block


def apply_ops(arr: da.Array, ops: Sequence[BlockOp]) -> da.Array:
    """Several block-wise filters as one ``map_overlap`` with the summed halo.

    Exact, not an approximation: with ``boundary='none'`` every filter sees the true
    array edge where scipy does, and the values a filter gets wrong near an interior
    block edge (it sees no further) lie within its own halo, so the errors of the chain
    stay inside the summed halo, which is trimmed.  One task per chunk instead of one
    halo exchange between workers per filter.

    Periodic filters (``mode="wrap"``) need ``boundary='periodic'`` and the others
    ``boundary='none'``, so a chain is split into runs of the same kind, one
    ``map_overlap`` each.
    """
    if not ops:
        return arr
    runs: list[list[BlockOp]] = []
    for op in ops:
        if runs and runs[-1][0].periodic == op.periodic:
            runs[-1].append(op)
        else:
            runs.append([op])
    for run in runs:
        depth = [sum(d) for d in zip(*(op.depth for op in run), strict=True)]
        arr = arr.astype(run[0].in_dtype)
        arr = overlap_apply(
            arr, chain_block, depth, dtype=run[-1].dtype, periodic=run[0].periodic, ops=tuple(run)
        )
    return arr


def run_op(image: xr.DataArray, op: BlockOp) -> xr.DataArray:
    """One block-wise filter on ``image`` (lazy), re-wrapped like ``image``."""
    return rewrap(image, apply_ops(as_dask(image), [op]))


def float_dtype(dtype: np.dtype) -> np.dtype:
    """Float32 for integer/bool input, the input's own dtype for float input."""
    dtype = np.dtype(dtype)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def rewrap(
    image: xr.DataArray,
    data: da.Array,
    *,
    attrs: dict[str, Any] | None = None,
    coords: dict[str, Any] | None = None,
) -> xr.DataArray:
    """A DataArray like ``image`` (dims, coords, name, attrs) holding ``data``."""
    new_attrs = dict(image.attrs)
    if attrs:
        new_attrs.update(attrs)
    return xr.DataArray(
        data,
        dims=image.dims,
        coords=image.coords if coords is None else coords,
        attrs=new_attrs,
        name=image.name,
    )
