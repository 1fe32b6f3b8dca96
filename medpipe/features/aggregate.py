"""Directions and IBSI aggregations shared by the matrix families (GLCM, GLRLM).

Aggregations (IBSI names → feature suffix):

========================  ===========================  ==========================================
IBSI                      suffix                       what is merged / averaged
========================  ===========================  ==========================================
3D, merged                ``3d_merged``                13 matrices summed, one feature set
3D, averaged              ``3d_averaged``              features per direction, mean
2D, averaged              ``2d_averaged``              features per slice and direction, mean
2D, slice-merged          ``2d_slicemerged``           per slice: 4 directions summed, mean
2.5D, direction-merged    ``2_5d_directionmerged``     per direction: slices summed, mean
2.5D, merged              ``2_5d_merged``              everything summed, one feature set
========================  ===========================  ==========================================

Slices are the first (``z``) axis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "AGGREGATIONS",
    "DIRECTIONS_3D",
    "DIRECTIONS_2D",
    "check_aggregations",
    "as_levels",
    "mean_finite",
    "as_floats",
    "nan_where_empty",
    "aggregate",
    "aggregated_names",
]

AGGREGATIONS: dict[str, str] = {
    "3d_merged": "3D, merged",
    "3d_averaged": "3D, averaged",
    "2d_averaged": "2D, averaged",
    "2d_slicemerged": "2D, slice-merged",
    "2_5d_directionmerged": "2.5D, direction-merged",
    "2_5d_merged": "2.5D, merged",
}

#: The 13 unique 3D neighbour directions (dz, dy, dx) at Chebyshev distance 1.
DIRECTIONS_3D: tuple[tuple[int, int, int], ...] = tuple(
    o
    for o in itertools.product((-1, 0, 1), repeat=3)
    if o > (0, 0, 0)  # lexicographically positive: one of each +/- pair
)
#: The 4 unique in-plane directions (dz = 0): 0°, 45°, 90°, 135°.
DIRECTIONS_2D: tuple[tuple[int, int, int], ...] = ((0, 0, 1), (0, 1, 1), (0, 1, 0), (0, 1, -1))

_3D = ("3d_merged", "3d_averaged")

Stack = dict[str, np.ndarray]


def check_aggregations(
    aggregations: Sequence[str], *, what: str, known: Mapping[str, str] = AGGREGATIONS
) -> None:
    """Raise ``ValueError`` naming ``what`` (``GLCM``…) for keys not in ``known``."""
    unknown = set(aggregations) - set(known)
    if unknown:
        raise ValueError(f"unknown {what} aggregation(s) {sorted(unknown)}; use {list(known)}")


def as_levels(levels: np.ndarray, n_levels: int | None) -> tuple[np.ndarray, int]:
    """``(z, y, x)`` level array (a 2-D array is one slice) and ``N_g`` (default: max)."""
    lv = np.asarray(levels)
    if lv.ndim == 2:
        lv = lv[None]
    ng = int(n_levels) if n_levels is not None else max(int(lv.max()), 1)
    return lv, ng


def mean_finite(feats: Stack) -> dict[str, float]:
    """Mean of each feature over the finite values of its stack (NaN when none)."""
    out = {}
    for k, v in feats.items():
        v = np.asarray(v).ravel()
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if v.size else np.nan
    return out


def as_floats(feats: Stack) -> dict[str, float]:
    """Each feature of a single matrix as a float (non-finite values kept)."""
    return {k: float(v) for k, v in feats.items()}


def nan_where_empty(out: Stack, empty: np.ndarray, lead: tuple[int, ...]) -> Stack:
    """Features of a flattened stack as float64 of shape ``lead``, NaN for empty matrices."""
    res = {}
    for k, v in out.items():
        v = np.asarray(v, dtype=np.float64).copy()
        v[empty] = np.nan
        res[k] = v.reshape(lead)
    return res


def aggregate(
    aggregations: Sequence[str],
    *,
    matrices_3d: Callable[[], np.ndarray],
    matrices_2d: Callable[[], np.ndarray],
    feature_stack: Callable[[np.ndarray], Stack],
    merged_3d: Callable[[Stack], dict[str, float]] = mean_finite,
) -> dict[str, dict[str, float]]:
    """Features of each requested aggregation, from the directional matrices.

    Parameters
    ----------
    aggregations
        Keys of :data:`AGGREGATIONS`.
    matrices_3d
        Returns the ``(13, ...)`` 3-D directional matrices (called only if needed).
    matrices_2d
        Returns the ``(n_z, 4, ...)`` per-slice in-plane matrices (only if needed).
    feature_stack
        Features of a stack of matrices ``(..., a, b)`` → arrays of the stack's shape.
    merged_3d
        Reduces the features of the one summed 3-D matrix to floats.

    Returns
    -------
    dict
        ``aggregation -> {feature: value}``.
    """
    res: dict[str, dict[str, float]] = {}
    if set(_3D) & set(aggregations):
        m3 = matrices_3d()
        if "3d_merged" in aggregations:
            res["3d_merged"] = merged_3d(feature_stack(m3.sum(axis=0)))
        if "3d_averaged" in aggregations:
            res["3d_averaged"] = mean_finite(feature_stack(m3))
    if set(aggregations) - set(_3D):
        m2 = matrices_2d()
        stacks: dict[str, Callable[[], np.ndarray]] = {
            "2d_averaged": lambda: m2,
            "2d_slicemerged": lambda: m2.sum(axis=1),
            "2_5d_directionmerged": lambda: m2.sum(axis=0),
            "2_5d_merged": lambda: m2.sum(axis=(0, 1)),
        }
        for agg, stack in stacks.items():
            if agg in aggregations:
                res[agg] = mean_finite(feature_stack(stack()))
    return res


def aggregated_names(
    prefix: str, features: Sequence[str], aggregations: Sequence[str]
) -> list[str]:
    """Feature names ``<prefix>_<feature>_<aggregation>`` in output order."""
    return [f"{prefix}_{f}_{a}" for a in aggregations for f in features]
