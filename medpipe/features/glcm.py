"""Grey level co-occurrence matrix (GLCM) features, IBSI 1 section 3.6.

Matrices are built with a single ``np.bincount`` over all directions (and slices) at
once, visiting only the ROI voxels of a discretised level array (0 = outside the ROI),
so only voxel pairs whose two members are both in the ROI count.  Matrices are symmetric
(``M + M.T``) and use Chebyshev distance ``d`` (offsets are the 13 unit directions of 3D,
or the 4 in-plane ones of 2D, times ``d``).  Features are computed for a whole stack of
matrices at once.

Aggregations are those of :mod:`medpipe.features.aggregate` (IBSI 3D/2D/2.5D, merged or
averaged).

pyradiomics's ``glcm`` class (symmetric, distance 1, 13 directions, features per direction
then the mean) is IBSI "3D, averaged"; its JointEnergy is ``asm``, MaximumProbability
``joint_max``, SumSquares ``joint_variance``, Id/Idn/Idm/Idmn the ``inv_diff*`` features,
Imc1/Imc2 ``info_corr1``/``info_corr2``.  Its MCC has no IBSI counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medpipe.features.aggregate import (
    AGGREGATIONS,
    DIRECTIONS_2D,
    DIRECTIONS_3D,
    aggregate,
    aggregated_names,
    as_floats,
    as_levels,
    check_aggregations,
    nan_where_empty,
)
from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "AGGREGATIONS",
    "FEATURES",
    "DIRECTIONS_3D",
    "DIRECTIONS_2D",
    "glcm_matrix",
    "glcm_matrices_2d",
    "glcm_matrices_3d",
    "glcm_feature_stack",
    "glcm_features",
    "glcm_feature_names",
]

FEATURES: tuple[str, ...] = (
    "joint_max",
    "joint_average",
    "joint_variance",
    "joint_entropy",
    "diff_average",
    "diff_variance",
    "diff_entropy",
    "sum_average",
    "sum_variance",
    "sum_entropy",
    "asm",
    "contrast",
    "dissimilarity",
    "inv_diff",
    "inv_diff_norm",
    "inv_diff_moment",
    "inv_diff_moment_norm",
    "inv_variance",
    "correlation",
    "autocorrelation",
    "cluster_tendency",
    "cluster_shade",
    "cluster_prominence",
    "info_corr1",
    "info_corr2",
)

def _cooccurrence(
    levels: np.ndarray, offsets: Sequence[Sequence[int]], *, n_levels: int, per_slice: bool
) -> np.ndarray:
    """Asymmetric co-occurrence counts for several offsets with a single ``np.bincount``.

    Only the ROI voxels are visited: the level array is zero-padded by the largest offset,
    so the neighbour of ROI voxel ``p`` at offset ``o`` is ``flat[p + stride · o]`` (never
    wrapping), and a pair counts when that neighbour is in the ROI too.  Direction (and
    slice, for ``per_slice``) are folded into the bin index, so the cost is one gather and
    one bincount over ``n_roi × n_offsets`` pairs, independent of the bounding box.

    Returns ``(n_offsets, N_g, N_g)``, or ``(n_z, n_offsets, N_g, N_g)`` for ``per_slice``.
    """
    ng = int(n_levels)
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 3)
    k = len(offs)
    nz = levels.shape[0]
    pad = int(np.abs(offs).max()) if offs.size else 0
    padded = np.pad(np.asarray(levels, dtype=np.int32), pad)
    flat = padded.ravel()
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], np.int64)
    pos = np.flatnonzero(flat)
    nbins = (nz if per_slice else 1) * k * ng * ng
    itype = np.int32 if nbins < 2**31 - 1 else np.int64  # halves the memory traffic
    # bin of pair (p, direction d): [z *] k N_g² + d N_g² + (level(p) - 1) N_g + level(nb) - 1
    base = flat[pos].astype(itype) * ng - (ng + 1)  # (n,)
    if per_slice:
        base += ((pos // strides[0] - pad) * (k * ng * ng)).astype(itype)
    b = flat[pos[None, :] + (offs @ strides)[:, None]]  # (k, n), 0 = neighbour outside
    valid = b > 0
    idx = base[None, :] + (np.arange(k, dtype=itype) * (ng * ng))[:, None]
    idx += b.astype(itype, copy=False)
    shape = (nz, k, ng, ng) if per_slice else (k, ng, ng)
    return np.bincount(idx[valid], minlength=nbins).reshape(shape).astype(np.float64)


def glcm_matrix(
    levels: np.ndarray, offset: Sequence[int], *, n_levels: int, per_slice: bool = False
) -> np.ndarray:
    """Symmetric co-occurrence counts of ``levels`` for one offset.

    Parameters
    ----------
    levels
        Integer grey levels ``1..n_levels``, 0 outside the ROI (3-D, ``z, y, x``).
    offset
        Voxel offset ``(dz, dy, dx)``.
    n_levels
        Matrix size ``N_g``.
    per_slice
        Keep one matrix per ``z`` slice (offset must have ``dz == 0``).

    Returns
    -------
    numpy.ndarray
        ``float64`` counts, shape ``(N_g, N_g)`` or ``(n_z, N_g, N_g)``.
    """
    if per_slice and offset[0] != 0:
        raise ValueError("per-slice matrices need an in-plane offset (dz == 0)")
    m = _cooccurrence(np.asarray(levels), [offset], n_levels=n_levels, per_slice=per_slice)
    m = m[:, 0] if per_slice else m[0]
    return m + np.swapaxes(m, -1, -2)


def glcm_matrices_3d(levels: np.ndarray, *, n_levels: int, distance: int = 1) -> np.ndarray:
    """The 13 directional 3-D matrices, shape ``(13, N_g, N_g)``."""
    offs = [tuple(distance * c for c in o) for o in DIRECTIONS_3D]
    m = _cooccurrence(np.asarray(levels), offs, n_levels=n_levels, per_slice=False)
    return m + np.swapaxes(m, -1, -2)


def glcm_matrices_2d(levels: np.ndarray, *, n_levels: int, distance: int = 1) -> np.ndarray:
    """Per-slice in-plane matrices, shape ``(n_z, 4, N_g, N_g)``."""
    offs = [tuple(distance * c for c in o) for o in DIRECTIONS_2D]
    m = _cooccurrence(np.asarray(levels), offs, n_levels=n_levels, per_slice=True)
    return m + np.swapaxes(m, -1, -2)


def _plogp(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)


def _marginal(flat: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Row-wise sums of ``flat`` (``(n, N_g²)``) grouped by ``bins``: one weighted bincount."""
    n = len(flat)
    idx = (np.arange(n, dtype=np.int64)[:, None] * n_bins + bins[None, :]).ravel()
    return np.bincount(idx, weights=flat.ravel(), minlength=n * n_bins).reshape(n, n_bins)


def glcm_feature_stack(counts: np.ndarray) -> dict[str, np.ndarray]:
    """IBSI GLCM features of a stack of (unnormalised) matrices.

    Parameters
    ----------
    counts
        Co-occurrence counts, shape ``(..., N_g, N_g)``; row/column ``k`` is grey level
        ``k + 1``.

    Returns
    -------
    dict
        Feature name (see :data:`FEATURES`) → array of shape ``counts.shape[:-2]``.
        Empty matrices give NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    lead = counts.shape[:-2]
    ng = counts.shape[-1]
    c = counts.reshape(-1, ng, ng)
    total = c.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c / total[:, None, None]
    g = np.arange(1, ng + 1, dtype=np.float64)
    gi = g[:, None]
    gj = g[None, :]
    pi = p.sum(axis=2)
    pj = p.sum(axis=1)
    mui = pi @ g
    muj = pj @ g
    sdi = np.sqrt(np.maximum(pi @ g**2 - mui**2, 0.0))
    sdj = np.sqrt(np.maximum(pj @ g**2 - muj**2, 0.0))
    flat = p.reshape(len(p), -1)

    kd = np.abs(gi - gj).astype(np.int64).ravel()
    pd = _marginal(flat, kd, ng)  # p_{i-j}(k), k = 0..N_g-1
    ks = (gi + gj).astype(np.int64).ravel() - 2
    ps = _marginal(flat, ks, 2 * ng - 1)  # p_{i+j}(k), k = 2..2N_g
    k_d = np.arange(ng, dtype=np.float64)
    k_s = np.arange(2, 2 * ng + 1, dtype=np.float64)
    mu_d = pd @ k_d
    mu_s = ps @ k_s

    # every feature that is a weighted sum of p(i, j): one matrix product for all of them
    absd = np.abs(gi - gj)
    weights = {
        "contrast": absd**2,
        "dissimilarity": absd,
        "inv_diff": 1.0 / (1.0 + absd),
        "inv_diff_norm": 1.0 / (1.0 + absd / ng),
        "inv_diff_moment": 1.0 / (1.0 + absd**2),
        "inv_diff_moment_norm": 1.0 / (1.0 + absd**2 / ng**2),
        "autocorrelation": gi * gj,
    }
    ws = flat @ np.stack([v.ravel() for v in weights.values()], axis=1)
    wsum = dict(zip(weights, ws.T, strict=True))

    hxy = -_plogp(flat).sum(axis=1)
    pipj = pi[:, :, None] * pj[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.where(pipj > 0, np.log2(np.where(pipj > 0, pipj, 1.0)), 0.0)
    hxy1 = -np.sum(p * lg, axis=(1, 2))
    hxy2 = -np.sum(pipj * lg, axis=(1, 2))
    hx = -_plogp(pi).sum(axis=1)
    hy = -_plogp(pj).sum(axis=1)
    inv_var = pd[:, 1:] @ (1.0 / k_d[1:] ** 2) if ng > 1 else np.zeros(len(p))
    dev = gi + gj - mui[:, None, None] - muj[:, None, None]
    pdev2 = p * (dev * dev)  # explicit products: numpy's float ** 3 / ** 4 are slow
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (wsum["autocorrelation"] - mui * muj) / (sdi * sdj)
        ic1 = (hxy - hxy1) / np.maximum(hx, hy)
        ic2 = np.sqrt(np.maximum(1.0 - np.exp(-2.0 * (hxy2 - hxy)), 0.0))
    out = {
        "joint_max": flat.max(axis=1) if flat.shape[1] else np.full(len(p), np.nan),
        "joint_average": mui,
        "joint_variance": pi @ g**2 - mui**2,
        "joint_entropy": hxy,
        "diff_average": mu_d,
        "diff_variance": pd @ k_d**2 - mu_d**2,
        "diff_entropy": -_plogp(pd).sum(axis=1),
        "sum_average": mu_s,
        "sum_variance": ps @ k_s**2 - mu_s**2,
        "sum_entropy": -_plogp(ps).sum(axis=1),
        "asm": np.sum(flat**2, axis=1),
        "contrast": wsum["contrast"],
        "dissimilarity": wsum["dissimilarity"],
        "inv_diff": wsum["inv_diff"],
        "inv_diff_norm": wsum["inv_diff_norm"],
        "inv_diff_moment": wsum["inv_diff_moment"],
        "inv_diff_moment_norm": wsum["inv_diff_moment_norm"],
        "inv_variance": inv_var,
        "correlation": corr,
        "autocorrelation": wsum["autocorrelation"],
        "cluster_tendency": np.sum(pdev2, axis=(1, 2)),
        "cluster_shade": np.sum(pdev2 * dev, axis=(1, 2)),
        "cluster_prominence": np.sum(pdev2 * dev * dev, axis=(1, 2)),
        "info_corr1": ic1,
        "info_corr2": ic2,
    }
    return nan_where_empty(out, total == 0, lead)


def glcm_feature_names(aggregations: Sequence[str] = tuple(AGGREGATIONS)) -> list[str]:
    """Feature names ``glcm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("glcm", FEATURES, aggregations)


def glcm_features(
    levels: np.ndarray,
    *,
    n_levels: int | None = None,
    distance: int = 1,
    aggregations: Sequence[str] = tuple(AGGREGATIONS),
) -> dict[str, float]:
    """IBSI GLCM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``1..N_g``, 0 outside the ROI, dims ``z, y, x``.  A 2-D
        array is taken as a single slice.
    n_levels
        Matrix size ``N_g`` (the bin count for fixed bin number); defaults to the highest
        level present.
    distance
        Chebyshev neighbour distance.
    aggregations
        Keys of :data:`AGGREGATIONS`.

    Returns
    -------
    dict
        ``glcm_<feature>_<aggregation> -> value``.
    """
    check_aggregations(aggregations, what="GLCM")
    lv, ng = as_levels(levels, n_levels)
    res = aggregate(
        aggregations,
        matrices_3d=lambda: glcm_matrices_3d(lv, n_levels=ng, distance=distance),
        matrices_2d=lambda: glcm_matrices_2d(lv, n_levels=ng, distance=distance),
        feature_stack=glcm_feature_stack,
        merged_3d=as_floats,
    )
    return {f"glcm_{f}_{a}": res[a][f] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return glcm_feature_names(config.glcm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    cfg = sample.config
    return glcm_features(
        sample.levels,
        n_levels=sample.n_levels,
        distance=cfg.glcm_distance,
        aggregations=cfg.glcm_aggregations,
    )


FAMILY = register_family(Family("glcm", _names, _compute))
