"""Intensity transforms: CT windowing, z-score and percentile clipping, all lazy.

The statistics (mean, standard deviation, percentiles) are Dask reductions that stay in the
graph: nothing is computed until the result is.  Percentiles are **exact** (the same order
statistics as :func:`numpy.percentile` with its default linear interpolation), found by a
radix select on the bit patterns of the values: each pass is a Dask reduction of per-block
65,536-bin histograms, so memory per task is bounded whatever the volume size.  Two passes
for 32-bit data, one for 8/16-bit, four for 64-bit.  The input is read once per pass plus once
for the clip; persist an expensive upstream chain first if that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dask
import dask.array as da
import numpy as np
import xarray as xr

from medpipe.errors import ConfigError
from medpipe.preprocess._core import as_dask, check_image, float_dtype, rewrap

__all__ = ["ct_window", "zscore", "percentile_clip", "dask_percentile"]


def ct_window(
    image: xr.DataArray, *, level: float, width: float, rescale: bool = False
) -> xr.DataArray:
    """Clip to a CT window ``[level - width/2, level + width/2]`` (HU).

    Parameters
    ----------
    image
        Dask-backed image in HU.
    level, width
        Window centre and width (width > 0), e.g. level 40, width 400 for soft tissue.
    rescale
        If true, map the window linearly to ``[0, 1]``.

    Returns
    -------
    xarray.DataArray
        Lazy float result (float32 for integer input).
    """
    check_image(image)
    if not (np.isfinite(level) and np.isfinite(width) and width > 0):
        raise ConfigError(f"ct_window needs finite level and width > 0, got {level}, {width}")
    dtype = float_dtype(image.dtype)
    lo, hi = level - width / 2.0, level + width / 2.0
    arr = da.clip(as_dask(image).astype(dtype), dtype.type(lo), dtype.type(hi))
    if rescale:
        arr = ((arr - dtype.type(lo)) / dtype.type(width)).astype(dtype)
    return rewrap(image, arr)


def zscore(image: xr.DataArray, *, eps: float = 0.0) -> xr.DataArray:
    """Standardise to zero mean and unit standard deviation over the whole image.

    Mean and (population, ``ddof=0``) standard deviation are float64 Dask reductions kept in
    the graph.  The result equals ``(x - x.mean()) / x.std()`` computed by numpy to within
    float rounding (the chunked sum adds in a different order).

    Parameters
    ----------
    image
        Dask-backed image.
    eps
        Added to the standard deviation (use > 0 to avoid dividing by 0 on a flat image).

    Returns
    -------
    xarray.DataArray
        Lazy float result (float32 for integer input).
    """
    check_image(image)
    if not (np.isfinite(eps) and eps >= 0):
        raise ConfigError(f"eps must be >= 0, got {eps}")
    dtype = float_dtype(image.dtype)
    arr = as_dask(image)
    mean = arr.mean(dtype=np.float64)
    std = arr.std(dtype=np.float64)
    out = ((arr.astype(np.float64) - mean) / (std + eps)).astype(dtype)
    return rewrap(image, out)


# --------------------------------------------------------------------------- exact percentiles

_DIGIT_BITS = 16


def _key_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def _to_keys(block: np.ndarray) -> np.ndarray:
    """Order-preserving map of values onto unsigned integers of the same width."""
    dt = block.dtype
    udt = _key_dtype(dt)
    u = np.ascontiguousarray(block).view(udt).ravel()
    top = udt.type(1 << (8 * udt.itemsize - 1))
    if np.issubdtype(dt, np.floating):
        neg = (u & top) != 0
        return np.where(neg, ~u, u | top)
    if np.issubdtype(dt, np.signedinteger):
        return u ^ top
    return u


def _from_key(key: int, dtype: np.dtype) -> float:
    """Inverse of :func:`_to_keys` for one key."""
    dtype = np.dtype(dtype)
    udt = _key_dtype(dtype)
    nbits = 8 * udt.itemsize
    top = 1 << (nbits - 1)
    mask = (1 << nbits) - 1
    if np.issubdtype(dtype, np.floating):
        u = key ^ top if key & top else (~key) & mask
    elif np.issubdtype(dtype, np.signedinteger):
        u = key ^ top
    else:
        u = key
    return np.array([u], dtype=udt).view(dtype)[0].item()


def _block_hist(block: np.ndarray, prefixes: tuple[int, ...], shift: int, nbits_done: int
                ) -> np.ndarray:
    """Per-block histograms of the next digit of the keys that match each prefix."""
    keys = _to_keys(block)
    width = 8 * keys.dtype.itemsize
    digit_bits = min(_DIGIT_BITS, width)
    out = np.zeros((len(prefixes), 1 << digit_bits), dtype=np.int64)
    if keys.size == 0:
        return out
    if nbits_done:
        high = keys >> np.array(width - nbits_done, dtype=keys.dtype)
    digits = (keys >> np.array(shift, dtype=keys.dtype)) & np.array(
        (1 << digit_bits) - 1, dtype=keys.dtype
    )
    for i, p in enumerate(prefixes):
        sel = digits if not nbits_done else digits[high == p]
        out[i] = np.bincount(sel.astype(np.intp), minlength=1 << digit_bits)
    return out


def _sum_hists(hists: list[np.ndarray]) -> np.ndarray:
    return np.sum(hists, axis=0)


def _select(total: np.ndarray, state: tuple, digit_bits: int) -> tuple:
    """Advance each rank's prefix by one digit given the histograms of its prefix."""
    prefixes, ranks, uniq = state
    new_prefixes, new_ranks = [], []
    for p, r in zip(prefixes, ranks, strict=True):
        cum = np.cumsum(total[uniq.index(p)])
        d = int(np.searchsorted(cum, r, side="right"))
        below = int(cum[d - 1]) if d else 0
        new_prefixes.append((p << digit_bits) | d)
        new_ranks.append(r - below)
    uniq_new = sorted(set(new_prefixes))
    return tuple(new_prefixes), tuple(new_ranks), uniq_new


def _lerp(lo: float, hi: float, t: float) -> float:
    # numpy's _lerp: a + (b - a) * t, computed from the upper end when t >= 0.5.
    diff = hi - lo
    return hi - diff * (1 - t) if t >= 0.5 else lo + diff * t


def _finish(prefixes: tuple[int, ...], positions: list[float], ranks_of: list[tuple[int, int]],
            dtype: np.dtype) -> np.ndarray:
    values = [_from_key(k, dtype) for k in prefixes]
    out = []
    for (i_lo, i_hi), h in zip(ranks_of, positions, strict=True):
        out.append(_lerp(float(values[i_lo]), float(values[i_hi]), h - np.floor(h)))
    return np.array(out, dtype=np.float64)


def dask_percentile(arr: da.Array, q: Sequence[float]) -> da.Array:
    """Exact percentiles of a whole Dask array, as a lazy 1-D float64 array.

    Matches :func:`numpy.percentile` (default ``method="linear"``) on the flattened array:
    the order statistics are exact (radix select over per-block histograms) and they are
    interpolated with numpy's formula.  NaNs are not supported.

    Parameters
    ----------
    arr
        Any numeric Dask array (bool is treated as uint8).
    q
        Percentiles in ``[0, 100]``.

    Returns
    -------
    dask.array.Array
        Shape ``(len(q),)``, float64, lazy.
    """
    qs = [float(v) for v in q]
    if not qs or not all(0.0 <= v <= 100.0 for v in qs):
        raise ConfigError(f"percentiles must lie in [0, 100], got {q}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ConfigError(f"cannot take percentiles of dtype {arr.dtype}")
    n = int(np.prod(arr.shape))
    if n == 0:
        raise ConfigError("cannot take percentiles of an empty image")
    # Positions as numpy computes them: (n - 1) * q / 100, lower and upper order statistic.
    positions = [(n - 1) * v / 100.0 for v in qs]
    rank_set: list[int] = []
    ranks_of = []
    for h in positions:
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        for r in (lo, hi):
            if r not in rank_set:
                rank_set.append(r)
        ranks_of.append((rank_set.index(lo), rank_set.index(hi)))

    width = 8 * _key_dtype(arr.dtype).itemsize
    digit_bits = min(_DIGIT_BITS, width)
    blocks = arr.to_delayed().ravel().tolist()
    # state: (prefix per rank, remaining rank per rank, sorted distinct prefixes)
    state: object = ((0,) * len(rank_set), tuple(rank_set), [0])
    done = 0
    while done < width:
        shift = width - done - digit_bits
        uniq = dask.delayed(lambda s: tuple(s[2]), pure=True)(state)
        hists = [
            dask.delayed(_block_hist, pure=True)(b, uniq, shift, done) for b in blocks
        ]
        # Tree-sum the histograms so no task holds more than a few of them.
        while len(hists) > 1:
            hists = [
                dask.delayed(_sum_hists, pure=True)(hists[i : i + 8])
                for i in range(0, len(hists), 8)
            ]
        state = dask.delayed(partial(_select, digit_bits=digit_bits), pure=True)(hists[0], state)
        done += digit_bits
    keys = dask.delayed(lambda s: s[0], pure=True)(state)
    result = dask.delayed(_finish, pure=True)(keys, positions, ranks_of, arr.dtype)
    return da.from_delayed(result, shape=(len(qs),), dtype=np.float64)


def percentile_clip(
    image: xr.DataArray, *, low: float = 0.5, high: float = 99.5
) -> xr.DataArray:
    """Clip intensities to the ``low``-th and ``high``-th percentiles of the whole image.

    The percentiles are exact (:func:`dask_percentile`, equal to ``numpy.percentile`` on the
    whole array) and computed lazily inside the graph; the volume is never loaded at once.

    Parameters
    ----------
    image
        Dask-backed image.
    low, high
        Percentiles in ``[0, 100]`` with ``low <= high``.

    Returns
    -------
    xarray.DataArray
        Lazy float result (float32 for integer input, else the input dtype).  The bounds
        are cast to that dtype before clipping.
    """
    check_image(image)
    if not (0.0 <= low <= high <= 100.0):
        raise ConfigError(f"need 0 <= low <= high <= 100, got low={low}, high={high}")
    dtype = float_dtype(image.dtype)
    arr = as_dask(image)
    bounds = dask_percentile(arr, [low, high]).astype(dtype)
    out = da.clip(arr.astype(dtype), bounds[0], bounds[1])
    return rewrap(image, out)
