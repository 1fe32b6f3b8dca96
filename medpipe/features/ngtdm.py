"""Neighbourhood grey tone difference matrix (NGTDM) features, IBSI 1 section 3.10 (``IPET``).

For every ROI voxel ``k`` of grey level ``i``, ``X̄_k`` is the mean grey level of its
neighbours within Chebyshev distance ``δ`` (``ngtdm_distance``, default 1) that lie in
the ROI; the centre is not a neighbour.  Neighbours outside the ROI are excluded, and a
voxel without any neighbour in the ROI has no valid neighbourhood and is left out
(IBSI's definition; the original one of Amadasun and King demands complete
neighbourhoods inside the ROI).  pyradiomics's ``ngtdm`` follows IBSI's rule: its values are
IBSI's 3D, and with ``force2D`` IBSI's 2.5D merged (it has no 2D averaging); the test
checks both against its published baseline.  The matrix is the pair
``s_i = Σ_k |i − X̄_k|`` and ``n_i`` (the voxels of level ``i`` with a valid
neighbourhood), computed for every voxel at once with two ``scipy.ndimage.correlate``
passes (neighbour sums and neighbour counts over the masked levels).

Aggregations (IBSI names; the feature suffix is a key of
:data:`medpipe.features.aggregate.AGGREGATIONS`):

* 3D (``KOBO``): one matrix with the 3-D neighbourhood, ``3d_merged`` (``3d_averaged`` is
  the same value: there is a single matrix);
* 2.5D, merged (``62GR``): the per-slice (2-D neighbourhood) matrices summed,
  ``2_5d_merged`` (= ``2_5d_directionmerged``);
* 2D, averaged (``8QNN``): features per slice, averaged over the slices with a valid
  neighbourhood, ``2d_averaged`` (= ``2d_slicemerged``).

Degenerate cases follow IBSI: coarseness is ``10^6`` when ``Σ p_i s_i = 0``; contrast and
busyness are 0 with a single grey level present (``N_g,p = 1``), busyness also when its
denominator vanishes; strength is 0 when ``Σ s_i = 0``.  A matrix without any valid
neighbourhood gives NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from medpipe.features.aggregate import (
    aggregate,
    aggregated_names,
    as_levels,
    check_aggregations,
    nan_where_empty,
)
from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "FEATURES",
    "MAX_COARSENESS",
    "ngtdm_matrices",
    "ngtdm_feature_stack",
    "ngtdm_features",
    "ngtdm_feature_names",
]

FEATURES: tuple[str, ...] = ("coarseness", "contrast", "busyness", "complexity", "strength")

#: IBSI's cap of coarseness when ``Σ p_i s_i = 0``.
MAX_COARSENESS = 1e6

#: The default aggregations: IBSI's 3D, 2.5D merged and 2D averaged.
DEFAULT_AGGREGATIONS: tuple[str, ...] = ("3d_merged", "2_5d_merged", "2d_averaged")


def ngtdm_matrices(
    levels: np.ndarray, *, n_levels: int, distance: int = 1, per_slice: bool = False
) -> np.ndarray:
    """NGTDM of ``levels`` (``z, y, x``, ``1..N_g`` in the ROI, 0 outside).

    Parameters
    ----------
    levels
        Discretised grey levels, 0 outside the ROI.
    n_levels
        ``N_g``.
    distance
        Chebyshev neighbourhood radius ``δ``.
    per_slice
        One matrix per ``z`` slice with the in-plane neighbourhood (2-D), instead of one
        with the 3-D neighbourhood.

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(2, N_g)`` (row 0 ``s_i``, row 1 ``n_i``), or ``(n_z, 2, N_g)``
        with ``per_slice``.
    """
    lv = np.asarray(levels, dtype=np.int64)
    ng = int(n_levels)
    roi = lv > 0
    # neighbours outside the ROI (and outside the array) hold 0 and do not count.  The
    # neighbourhood is the (2δ+1)-box without its centre: a separable box sum (three 1-D
    # passes instead of one pass of (2δ+1)^3 taps) less the centre.  The sums of integer
    # levels and counts are integers, so rounding the box mean times its size is exact.
    size = (1 if per_slice else 2 * distance + 1, 2 * distance + 1, 2 * distance + 1)
    volume = float(np.prod(size))
    sums = np.rint(
        ndimage.uniform_filter(lv.astype(np.float64), size, mode="constant", cval=0.0) * volume
    ) - lv
    counts = np.rint(
        ndimage.uniform_filter(roi.astype(np.float64), size, mode="constant", cval=0.0) * volume
    ) - roi
    valid = roi & (counts > 0)
    g = lv[valid]
    diff = np.abs(g - sums[valid] / counts[valid])
    idx = g - 1
    if per_slice:
        nz = lv.shape[0]
        idx = idx + np.nonzero(valid)[0] * ng
        size = nz * ng
    else:
        size = ng
    s = np.bincount(idx, weights=diff, minlength=size)
    n = np.bincount(idx, minlength=size).astype(np.float64)
    if per_slice:
        return np.stack([s.reshape(nz, ng), n.reshape(nz, ng)], axis=1)
    return np.stack([s, n])


def ngtdm_feature_stack(matrices: np.ndarray) -> dict[str, np.ndarray]:
    """IBSI NGTDM features of a stack of matrices ``(..., 2, N_g)`` (``s_i``, ``n_i``).

    Matrices without a valid neighbourhood (``Σ n_i = 0``) give NaN.
    """
    m = np.asarray(matrices, dtype=np.float64)
    lead = m.shape[:-2]
    ng = m.shape[-1]
    m = m.reshape(-1, 2, ng)
    s, n = m[:, 0], m[:, 1]
    i = np.arange(1, ng + 1, dtype=np.float64)
    nvc = n.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = n / nvc[:, None]
        present = p > 0
        ngp = present.sum(axis=1)
        both = present[:, :, None] & present[:, None, :]
        di = i[:, None] - i[None, :]
        ps = np.sum(p * s, axis=1)
        s_sum = s.sum(axis=1)
        pp = p[:, :, None] * p[:, None, :]
        contrast = np.sum(pp * di**2, axis=(1, 2)) / (ngp * (ngp - 1)) * s_sum / nvc
        ip = i * p
        busy_den = np.sum(np.where(both, np.abs(ip[:, :, None] - ip[:, None, :]), 0.0), axis=(1, 2))
        pts = p * s
        psum = p[:, :, None] + p[:, None, :]
        cx = np.where(both, np.abs(di) * (pts[:, :, None] + pts[:, None, :]) / psum, 0.0)
        strength_num = np.sum(np.where(both, psum * di**2, 0.0), axis=(1, 2))
        out = {
            "coarseness": np.where(ps > 0, 1.0 / ps, MAX_COARSENESS),
            "contrast": np.where(ngp > 1, contrast, 0.0),
            "busyness": np.where((ngp > 1) & (busy_den > 0), ps / busy_den, 0.0),
            "complexity": np.sum(cx, axis=(1, 2)) / nvc,
            "strength": np.where(s_sum > 0, strength_num / s_sum, 0.0),
        }
    return nan_where_empty(out, nvc == 0, lead)


def ngtdm_feature_names(aggregations: Sequence[str] = DEFAULT_AGGREGATIONS) -> list[str]:
    """Feature names ``ngtdm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("ngtdm", FEATURES, aggregations)


def ngtdm_features(
    levels: np.ndarray,
    *,
    n_levels: int | None = None,
    distance: int = 1,
    aggregations: Sequence[str] = DEFAULT_AGGREGATIONS,
) -> dict[str, float]:
    """IBSI NGTDM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``1..N_g``, 0 outside the ROI, dims ``z, y, x`` (a 2-D array
        is one slice).
    n_levels
        ``N_g``; defaults to the highest level present.
    distance
        Chebyshev neighbourhood radius ``δ`` (IBSI default 1).
    aggregations
        Keys of :data:`medpipe.features.aggregate.AGGREGATIONS` (see the module
        docstring for which ones coincide).

    Returns
    -------
    dict
        ``ngtdm_<feature>_<aggregation> -> value``.
    """
    check_aggregations(aggregations, what="NGTDM")
    lv, ng = as_levels(levels, n_levels)
    res = aggregate(
        aggregations,
        # one "direction": the whole neighbourhood (so 3D averaged == merged, etc.)
        matrices_3d=lambda: ngtdm_matrices(lv, n_levels=ng, distance=distance)[None],
        matrices_2d=lambda: ngtdm_matrices(
            lv, n_levels=ng, distance=distance, per_slice=True
        )[:, None],
        feature_stack=ngtdm_feature_stack,
    )
    return {f"ngtdm_{f}_{a}": res[a][f] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return ngtdm_feature_names(config.ngtdm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    cfg = sample.config
    return ngtdm_features(
        sample.levels,
        n_levels=sample.n_levels,
        distance=cfg.ngtdm_distance,
        aggregations=cfg.ngtdm_aggregations,
    )


FAMILY = register_family(Family("ngtdm", _names, _compute))
