"""Neighbouring grey level dependence matrix (NGLDM) features, IBSI 1 section 3.11 (``REK0``).

A neighbour ``m`` (Chebyshev distance ≤ ``δ``, ``ngldm_distance``, default 1) of an ROI
voxel ``k`` is dependent on it when it lies in the ROI and
``|X_d(k) − X_d(m)| ≤ α`` (``ngldm_alpha``, default 0).  The dependence count
``j_k`` is 1 (the centre) plus the dependent neighbours; every ROI voxel is a centre
(IBSI does not demand complete neighbourhoods, so ``N_s = N_v`` and the dependence count
percentage is 1).  ``s[i, j]`` counts the voxels of level ``i + 1`` with dependence
``j + 1``; it has ``(2δ+1)^3`` columns in 3-D and ``(2δ+1)^2`` per slice in 2-D, so
matrices of different slices stack and merge.  The counts come from one shifted
comparison of the whole level array per neighbour offset (26 in 3-D), never a loop over
voxels.

pyradiomics's ``gldm`` (``gldm_a`` = α) is this matrix: its values are IBSI's 3D, and with
``force2D`` IBSI's 2.5D merged; it has no 2D averaging and no dependence count percentage.

Aggregations as for :mod:`medpipe.features.ngtdm`: 3D (``3d_merged`` = ``3d_averaged``),
2.5D merged (``2_5d_merged`` = ``2_5d_directionmerged``) and 2D averaged
(``2d_averaged`` = ``2d_slicemerged``).  An empty matrix gives NaN.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

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
    "ngldm_matrices",
    "ngldm_feature_stack",
    "ngldm_features",
    "ngldm_feature_names",
]

FEATURES: tuple[str, ...] = (
    "lde",
    "hde",
    "lgce",
    "hgce",
    "ldlge",
    "ldhge",
    "hdlge",
    "hdhge",
    "glnu",
    "glnu_norm",
    "dcnu",
    "dcnu_norm",
    "dc_perc",
    "gl_var",
    "dc_var",
    "dc_entr",
    "dc_energy",
)

#: The default aggregations: IBSI's 3D, 2.5D merged and 2D averaged.
DEFAULT_AGGREGATIONS: tuple[str, ...] = ("3d_merged", "2_5d_merged", "2d_averaged")


def ngldm_matrices(
    levels: np.ndarray,
    *,
    n_levels: int,
    alpha: int = 0,
    distance: int = 1,
    per_slice: bool = False,
) -> np.ndarray:
    """NGLDM of ``levels`` (``z, y, x``, ``1..N_g`` in the ROI, 0 outside).

    Parameters
    ----------
    levels
        Discretised grey levels, 0 outside the ROI.
    n_levels
        ``N_g``.
    alpha
        Coarseness parameter ``α``: neighbours within ``α`` grey levels are dependent.
    distance
        Chebyshev neighbourhood radius ``δ``.
    per_slice
        One matrix per ``z`` slice with the in-plane neighbourhood.

    Returns
    -------
    numpy.ndarray
        ``float64`` counts ``(N_g, N_n)``, or ``(n_z, N_g, N_n)`` with ``per_slice``;
        ``N_n = (2δ+1)^3`` (3-D) or ``(2δ+1)^2`` (2-D).
    """
    ng = int(n_levels)
    # small integer types: the 26 (or more) neighbour passes are memory-bound
    lv = np.asarray(levels, dtype=np.int16 if ng < 2**15 else np.int64)
    d = int(distance)
    dz = 0 if per_slice else d
    nn = (2 * d + 1) ** (2 if per_slice else 3)
    padded = np.pad(lv, d)  # 0: outside the ROI
    nz, ny, nx = lv.shape
    roi = lv > 0
    dep = np.ones(lv.shape, dtype=np.int16 if nn < 2**15 else np.int64)  # the centre itself
    for oz, oy, ox in itertools.product(range(-dz, dz + 1), range(-d, d + 1), range(-d, d + 1)):
        if oz == oy == ox == 0:
            continue
        nb = padded[d + oz : d + oz + nz, d + oy : d + oy + ny, d + ox : d + ox + nx]
        if alpha == 0:  # equal levels (a neighbour outside the ROI, 0, never equals one)
            dep += nb == lv
        else:
            dep += (nb > 0) & (np.abs(nb.astype(np.int64) - lv) <= alpha)
    g = lv[roi].astype(np.int64) - 1
    idx = g * nn + dep[roi].astype(np.int64) - 1
    if per_slice:
        idx = idx + np.nonzero(roi)[0] * (ng * nn)
        shape: tuple[int, ...] = (nz, ng, nn)
    else:
        shape = (ng, nn)
    return np.bincount(idx, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)


def ngldm_feature_stack(counts: np.ndarray) -> dict[str, np.ndarray]:
    """IBSI NGLDM features of a stack of matrices ``(..., N_g, N_n)``.

    Empty matrices give NaN.
    """
    s = np.asarray(counts, dtype=np.float64)
    lead = s.shape[:-2]
    ng, nn = s.shape[-2:]
    s = s.reshape(-1, ng, nn)
    i = np.arange(1, ng + 1, dtype=np.float64)[:, None]
    j = np.arange(1, nn + 1, dtype=np.float64)[None, :]
    ns = s.sum(axis=(1, 2))
    si = s.sum(axis=2)  # per grey level
    sj = s.sum(axis=1)  # per dependence count
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / ns[:, None, None]
        mu_i = np.sum(p * i, axis=(1, 2))
        mu_j = np.sum(p * j, axis=(1, 2))

        def emph(w: np.ndarray) -> np.ndarray:
            return np.sum(s * w, axis=(1, 2)) / ns

        logp = np.log2(np.where(p > 0, p, 1.0))
        out = {
            "lde": emph(1.0 / j**2 + 0 * i),
            "hde": emph(j**2 + 0 * i),
            "lgce": emph(1.0 / i**2 + 0 * j),
            "hgce": emph(i**2 + 0 * j),
            "ldlge": emph(1.0 / (i**2 * j**2)),
            "ldhge": emph(i**2 / j**2),
            "hdlge": emph(j**2 / i**2),
            "hdhge": emph(i**2 * j**2),
            "glnu": np.sum(si**2, axis=1) / ns,
            "glnu_norm": np.sum(si**2, axis=1) / ns**2,
            "dcnu": np.sum(sj**2, axis=1) / ns,
            "dcnu_norm": np.sum(sj**2, axis=1) / ns**2,
            # N_s / N_v: every ROI voxel is a centre, so N_s = N_v and this is 1 (IBSI)
            "dc_perc": ns / ns,
            "gl_var": np.sum(p * (i - mu_i[:, None, None]) ** 2, axis=(1, 2)),
            "dc_var": np.sum(p * (j - mu_j[:, None, None]) ** 2, axis=(1, 2)),
            "dc_entr": -np.sum(p * logp, axis=(1, 2)),
            "dc_energy": np.sum(p**2, axis=(1, 2)),
        }
    return nan_where_empty(out, ns == 0, lead)


def ngldm_feature_names(aggregations: Sequence[str] = DEFAULT_AGGREGATIONS) -> list[str]:
    """Feature names ``ngldm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("ngldm", FEATURES, aggregations)


def ngldm_features(
    levels: np.ndarray,
    *,
    n_levels: int | None = None,
    alpha: int = 0,
    distance: int = 1,
    aggregations: Sequence[str] = DEFAULT_AGGREGATIONS,
) -> dict[str, float]:
    """IBSI NGLDM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``1..N_g``, 0 outside the ROI, dims ``z, y, x`` (a 2-D array
        is one slice).
    n_levels
        ``N_g``; defaults to the highest level present.
    alpha
        Coarseness parameter ``α`` (IBSI default 0).
    distance
        Chebyshev neighbourhood radius ``δ`` (IBSI default 1).
    aggregations
        Keys of :data:`medpipe.features.aggregate.AGGREGATIONS`.

    Returns
    -------
    dict
        ``ngldm_<feature>_<aggregation> -> value``.
    """
    check_aggregations(aggregations, what="NGLDM")
    lv, ng = as_levels(levels, n_levels)

    def matrices(per_slice: bool) -> np.ndarray:
        return ngldm_matrices(
            lv, n_levels=ng, alpha=alpha, distance=distance, per_slice=per_slice
        )

    res = aggregate(
        aggregations,
        matrices_3d=lambda: matrices(False)[None],  # one "direction": the neighbourhood
        matrices_2d=lambda: matrices(True)[:, None],
        feature_stack=ngldm_feature_stack,
    )
    return {f"ngldm_{f}_{a}": res[a][f] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return ngldm_feature_names(config.ngldm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    cfg = sample.config
    return ngldm_features(
        sample.levels,
        n_levels=sample.n_levels,
        alpha=cfg.ngldm_alpha,
        distance=cfg.ngldm_distance,
        aggregations=cfg.ngldm_aggregations,
    )


FAMILY = register_family(Family("ngldm", _names, _compute))
