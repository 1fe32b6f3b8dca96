"""Grey level run length matrix (GLRLM) features, IBSI 1 section 3.7.

A run is a maximal line of consecutive ROI voxels with the same grey level along one
direction (the 13 unique 3-D directions, or the 4 in-plane ones for 2-D, as in
:mod:`medpipe.features.glcm`).  ``r[i, j]`` counts runs of level ``i + 1`` and length
``j + 1``.  Runs are found for every direction at once from their start voxels (the
voxels whose predecessor along the direction is outside the ROI or of another level),
then grown one step per iteration while the next voxel continues them (the live runs
compacted, the runs that stop adding one column of run lengths), so the cost is
``O(n_roi × n_directions)`` plus the longest run's length in iterations.

Aggregations are those of :mod:`medpipe.features.aggregate`.  ``N_v``, the
voxel count in the run percentage, is ``Σ j r_ij`` of the (possibly merged) matrix, which
is IBSI's rule of counting the ROI voxels once per merged direction and slice.
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
    "glrlm_matrices",
    "glrlm_feature_stack",
    "glrlm_features",
    "glrlm_feature_names",
]

FEATURES: tuple[str, ...] = (
    "sre",
    "lre",
    "lgre",
    "hgre",
    "srlge",
    "srhge",
    "lrlge",
    "lrhge",
    "glnu",
    "glnu_norm",
    "rlnu",
    "rlnu_norm",
    "r_perc",
    "gl_var",
    "rl_var",
    "rl_entr",
)


def glrlm_matrices(
    levels: np.ndarray,
    offsets: Sequence[Sequence[int]],
    *,
    n_levels: int,
    per_slice: bool = False,
) -> np.ndarray:
    """Run length matrices of ``levels`` (``z, y, x``, 0 outside the ROI), one per offset.

    Returns
    -------
    numpy.ndarray
        ``float64`` counts ``(n_offsets, N_g, N_r)``, or ``(n_z, n_offsets, N_g, N_r)``
        with ``per_slice``; ``N_r`` is the largest array dimension.
    """
    ng = int(n_levels)
    # the smallest integer type holding the levels: the random reads below stay in cache
    lv = np.asarray(levels, dtype=np.uint8 if ng < 256 else np.int32)
    nr = max(lv.shape)
    nz = lv.shape[0]
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 3)
    k = len(offs)
    pad = int(np.abs(offs).max())
    padded = np.pad(lv, pad)
    flat = padded.ravel()
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], np.int64)
    step = offs @ strides  # (k,)
    pos = np.flatnonzero(flat)
    lvl = flat[pos]
    # run starts: predecessor (p - o) is outside the ROI or of another level; run ends:
    # successor (p + o) is.  A voxel that is both is a run of length 1 (most runs of a
    # fine-grained image); only the longer runs are walked.
    start = flat[pos[None, :] - step[:, None]] != lvl[None, :]  # (k, n)
    end = flat[pos[None, :] + step[:, None]] != lvl[None, :]
    # (slice,) direction and level of each voxel's matrix cell; boolean selections of the
    # broadcast (k, n) arrays are sequential reads (no index arrays)
    cell_kn = np.arange(k, dtype=np.int64)[:, None] * ng + lvl[None, :].astype(np.int64) - 1
    n_cells = k * ng
    if per_slice:
        cell_kn = cell_kn + (pos // strides[0] - pad)[None, :] * n_cells
        n_cells *= nz
    columns: list[np.ndarray] = [np.bincount(cell_kn[start & end], minlength=n_cells)]
    longer = start & ~end
    cell = cell_kn[longer]
    cur = np.broadcast_to(pos[None, :], (k, pos.size))[longer]
    st = np.broadcast_to(step[:, None], (k, pos.size))[longer]
    run_level = np.broadcast_to(lvl[None, :], (k, pos.size))[longer]
    cur = cur + st  # every run here has a second voxel
    # Grow every live run by one voxel per iteration; the runs that stop at iteration L
    # have length L, so each iteration adds one column of the matrix.  The live runs are
    # kept compacted (boolean selections, one random read per run and step).
    while cur.size:
        cur = cur + st
        same = flat[cur] == run_level
        columns.append(np.bincount(cell[~same], minlength=n_cells))
        cur, run_level, cell, st = cur[same], run_level[same], cell[same], st[same]
    counts = np.zeros((n_cells, nr), dtype=np.float64)
    if columns:
        counts[:, : len(columns)] = np.stack(columns, axis=1)
    shape: tuple[int, ...] = (nz, k, ng, nr) if per_slice else (k, ng, nr)
    return counts.reshape(shape)


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=(1, 2))


def glrlm_feature_stack(counts: np.ndarray) -> dict[str, np.ndarray]:
    """IBSI GLRLM features of a stack of run length matrices ``(..., N_g, N_r)``.

    Empty matrices give NaN.
    """
    r = np.asarray(counts, dtype=np.float64)
    lead = r.shape[:-2]
    ng, nr = r.shape[-2:]
    r = r.reshape(-1, ng, nr)
    i = np.arange(1, ng + 1, dtype=np.float64)[:, None]
    j = np.arange(1, nr + 1, dtype=np.float64)[None, :]
    ns = r.sum(axis=(1, 2))
    nv = np.sum(r * j, axis=(1, 2))
    ri = r.sum(axis=2)  # marginal over run length
    rj = r.sum(axis=1)  # marginal over grey level
    with np.errstate(divide="ignore", invalid="ignore"):
        p = r / ns[:, None, None]
        mu_i = np.sum(p * i, axis=(1, 2))
        mu_j = np.sum(p * j, axis=(1, 2))

        def emph(w: np.ndarray) -> np.ndarray:
            return np.sum(r * w, axis=(1, 2)) / ns

        out = {
            "sre": emph(1.0 / j**2),
            "lre": emph(j**2),
            "lgre": emph(1.0 / i**2 + 0 * j),
            "hgre": emph(i**2 + 0 * j),
            "srlge": emph(1.0 / (i**2 * j**2)),
            "srhge": emph(i**2 / j**2),
            "lrlge": emph(j**2 / i**2),
            "lrhge": emph(i**2 * j**2),
            "glnu": np.sum(ri**2, axis=1) / ns,
            "glnu_norm": np.sum(ri**2, axis=1) / ns**2,
            "rlnu": np.sum(rj**2, axis=1) / ns,
            "rlnu_norm": np.sum(rj**2, axis=1) / ns**2,
            "r_perc": ns / nv,
            "gl_var": np.sum(p * (i - mu_i[:, None, None]) ** 2, axis=(1, 2)),
            "rl_var": np.sum(p * (j - mu_j[:, None, None]) ** 2, axis=(1, 2)),
            "rl_entr": _entropy(p),
        }
    return nan_where_empty(out, ns == 0, lead)


def glrlm_feature_names(aggregations: Sequence[str] = tuple(AGGREGATIONS)) -> list[str]:
    """Feature names ``glrlm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("glrlm", FEATURES, aggregations)


def glrlm_features(
    levels: np.ndarray,
    *,
    n_levels: int | None = None,
    aggregations: Sequence[str] = tuple(AGGREGATIONS),
) -> dict[str, float]:
    """IBSI GLRLM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``1..N_g``, 0 outside the ROI, dims ``z, y, x`` (a 2-D array
        is one slice).
    n_levels
        Matrix rows ``N_g``; defaults to the highest level present.
    aggregations
        Keys of :data:`medpipe.features.glcm.AGGREGATIONS`.

    Returns
    -------
    dict
        ``glrlm_<feature>_<aggregation> -> value``.
    """
    check_aggregations(aggregations, what="GLRLM")
    lv, ng = as_levels(levels, n_levels)
    res = aggregate(
        aggregations,
        matrices_3d=lambda: glrlm_matrices(lv, DIRECTIONS_3D, n_levels=ng),
        matrices_2d=lambda: glrlm_matrices(lv, DIRECTIONS_2D, n_levels=ng, per_slice=True),
        feature_stack=glrlm_feature_stack,
    )
    return {f"glrlm_{f}_{a}": res[a][f] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return glrlm_feature_names(config.glrlm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    return glrlm_features(
        sample.levels, n_levels=sample.n_levels, aggregations=sample.config.glrlm_aggregations
    )


FAMILY = register_family(Family("glrlm", _names, _compute))
