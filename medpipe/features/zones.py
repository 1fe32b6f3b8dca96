"""Zones shared by the GLSZM and GLDZM families (IBSI 1 sections 3.8 and 3.9).

A *zone* is a connected set of ROI voxels of the same grey level: 26-connected in 3-D,
8-connected within one slice in 2-D.  The GLSZM counts zones by grey level and size,
the GLDZM by grey level and distance, the distance of a zone being the smallest
:func:`border_distance` of its voxels.  Both share the same sixteen formulas
(:data:`FORMULAS`, :func:`zone_feature_stack`), computed straight from the list of zones
(level, size or distance, slice) rather than from a dense matrix, so a large ROI with
large zones costs ``O(n_voxels)`` and never a ``N_g × N_v`` matrix.

All zones are found by one :func:`skimage.measure.label` call, which connects
neighbouring voxels of equal value (no loop over grey levels or voxels).  For the 2-D
zones the levels of every other slice are shifted past ``N_g`` first, so no zone can
cross from one slice into the next.

Aggregations (IBSI names → feature suffix), :data:`ZONE_AGGREGATIONS`:

=========  ===============  ====================================================
IBSI       suffix           what is computed
=========  ===============  ====================================================
3D         ``3d_merged``    one matrix of the 3-D zones of the volume
2D         ``2d_averaged``  one matrix per slice (2-D zones), features averaged
2.5D       ``2_5d_merged``  the per-slice matrices summed, one feature set
=========  ===============  ====================================================

``N_v``, the voxel count in the zone percentage, is the number of ROI voxels of the
slice (2D) or of the volume (2.5D, 3D).  A slice without ROI voxels is left out of the
2D average; an empty ROI gives NaN everywhere.

A constant ROI that is one connected zone of ``n`` voxels at level ``g`` (distance
``d``, which is 1 for a single zone: it touches the border) gives, in 3D and in each
slice for 2D: small/large emphasis ``1/n²``/``n²`` (GLDZM ``1/d²``/``d²``), low/high
grey level emphasis ``1/g²``/``g²``, the combined emphases their products, both
non-uniformities and their normalised forms 1, zone percentage ``1/n``, both variances
and the entropy 0.  In 2.5D the ``k`` slice zones are merged: the same emphases,
variances and entropy, non-uniformities ``k`` (normalised 1), zone percentage
``k/N_v``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import label

from medpipe.features.aggregate import mean_finite

__all__ = [
    "ZONE_AGGREGATIONS",
    "FORMULAS",
    "Zones",
    "border_distance",
    "find_zones",
    "zone_matrices",
    "zone_feature_stack",
    "zone_aggregate",
]

#: Aggregation keys of the zone families → IBSI's names.
ZONE_AGGREGATIONS: dict[str, str] = {
    "3d_merged": "3D",
    "2d_averaged": "2D",
    "2_5d_merged": "2.5D",
}

#: The generic formulas, in output order; ``s``/``l`` is small/large in the value
#: (zone size or distance), ``lg``/``hg`` low/high grey level.
FORMULAS: tuple[str, ...] = (
    "se",  # small (zone / distance) emphasis
    "le",  # large emphasis
    "lgze",  # low grey level zone emphasis
    "hgze",  # high grey level zone emphasis
    "slge",  # small, low grey level emphasis
    "shge",  # small, high grey level emphasis
    "llge",  # large, low grey level emphasis
    "lhge",  # large, high grey level emphasis
    "glnu",  # grey level non-uniformity
    "glnu_norm",
    "nu",  # zone size / distance non-uniformity
    "nu_norm",
    "z_perc",  # zone percentage
    "gl_var",
    "var",  # zone size / distance variance
    "entr",  # zone size / distance entropy
)


@dataclass(frozen=True)
class Zones:
    """The zones of a level array, one entry per zone.

    Attributes
    ----------
    level
        Grey level ``1..N_g`` of each zone.
    size
        Number of voxels of each zone.
    slice
        Index (first axis) of the zone's slice; for 3-D zones, of its first slice.
    distance
        Smallest border distance of the zone's voxels, or ``None`` when no distance map
        was given.
    """

    level: np.ndarray
    size: np.ndarray
    slice: np.ndarray
    distance: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.level)


def _as_3d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a[None] if a.ndim == 2 else a


def border_distance(mask: np.ndarray, *, per_slice: bool = False) -> np.ndarray:
    """IBSI's distance of each ROI voxel to the ROI border (GLDZM, section 3.9).

    The taxicab (city block) distance to the nearest voxel outside the ROI, where
    voxels beyond the array's edge count as outside: 1 for a voxel on the border, 0
    outside the ROI.  3-D distances use the 6 face neighbours, ``per_slice`` distances
    the 4 in-plane neighbours of each slice (first axis) separately.

    Parameters
    ----------
    mask
        Boolean ROI, ``z, y, x`` (a 2-D array is one slice); IBSI takes the
        morphological mask here.
    per_slice
        In-plane distances per slice (the 2D and 2.5D aggregations).

    Returns
    -------
    numpy.ndarray
        ``int32`` distances with the shape of ``mask``.
    """
    m = np.asarray(mask, dtype=bool)
    squeeze = m.ndim == 2
    m = _as_3d(m)
    if per_slice:
        padded = np.pad(m, ((0, 0), (1, 1), (1, 1)))
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        d = ndimage.distance_transform_cdt(padded, metric=structure)[:, 1:-1, 1:-1]
    else:
        d = ndimage.distance_transform_cdt(np.pad(m, 1), metric="taxicab")[1:-1, 1:-1, 1:-1]
    d = np.where(m, d, 0).astype(np.int32)
    return d[0] if squeeze else d


def find_zones(
    levels: np.ndarray, *, per_slice: bool = False, distance: np.ndarray | None = None
) -> Zones:
    """The zones of ``levels`` (``z, y, x``, grey levels ``>= 1``, 0 outside the ROI).

    Parameters
    ----------
    levels
        Discretised grey levels (a 2-D array is one slice).
    per_slice
        2-D zones (8-connected within each slice) instead of 3-D ones (26-connected).
    distance
        Optional per-voxel distance map (:func:`border_distance`); the zones then carry
        the smallest distance of their voxels.

    Returns
    -------
    Zones
        One entry per zone, in label order.
    """
    lv = _as_3d(np.asarray(levels)).astype(np.int64)
    roi = lv > 0
    keyed = lv
    if per_slice and lv.shape[0] > 1:
        # shift every other slice past the highest level: equal values never touch
        # across slices, so 26-connected components stay within one slice
        odd = (np.arange(lv.shape[0]) % 2 == 1)[:, None, None]
        keyed = np.where(roi & odd, lv + int(lv.max()) + 1, lv)
    lab, n = label(keyed, background=0, connectivity=lv.ndim, return_num=True)
    flat = lab.ravel()
    pos = np.flatnonzero(flat)
    zl = flat[pos].astype(np.int64)
    size = np.bincount(zl, minlength=n + 1)[1:]
    level = np.zeros(n + 1, dtype=np.int64)
    level[zl] = lv.ravel()[pos]  # every voxel of a zone has the zone's level
    first = np.full(n + 1, pos.size, dtype=np.int64)
    np.minimum.at(first, zl, np.arange(pos.size))
    zslice = pos[first[1:]] // (lv.shape[1] * lv.shape[2]) if n else np.zeros(0, np.int64)
    dist = None
    if distance is not None:
        d3 = _as_3d(np.asarray(distance))
        if d3.shape != lv.shape:
            raise ValueError(f"distance map shape {d3.shape} differs from levels {lv.shape}")
        dmap = d3.ravel()
        d = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(d, zl, dmap[pos].astype(np.int64))
        dist = d[1:]
        if dist.size and dist.min() < 1:
            raise ValueError(
                "the distance map is 0 at ROI voxels: the morphological mask must hold "
                "every ROI voxel"
            )
    return Zones(level=level[1:], size=size, slice=zslice, distance=dist)


def zone_matrices(
    level: np.ndarray,
    value: np.ndarray,
    group: np.ndarray | None = None,
    *,
    n_levels: int,
    n_groups: int = 1,
    n_values: int | None = None,
) -> np.ndarray:
    """Dense zone matrices ``(n_groups, N_g, n_values)``: zones counted by level and value.

    ``m[k, i - 1, j - 1]`` is the number of zones of group ``k`` (e.g. slice) with grey
    level ``i`` and value (size or distance) ``j``; ``n_values`` defaults to the largest
    value (at least 1).
    """
    level = np.asarray(level, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    group = np.zeros_like(level) if group is None else np.asarray(group, dtype=np.int64)
    nv = int(n_values) if n_values is not None else max(int(value.max(initial=0)), 1)
    shape = (int(n_groups), int(n_levels), nv)
    idx = (group * n_levels + level - 1) * nv + value - 1
    return np.bincount(idx, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)


def zone_feature_stack(
    level: np.ndarray,
    value: np.ndarray,
    group: np.ndarray,
    *,
    n_groups: int,
    n_voxels: np.ndarray,
) -> dict[str, np.ndarray]:
    """The :data:`FORMULAS` of each group of zones, from the zone list.

    Parameters
    ----------
    level, value, group
        Per zone: grey level ``i``, value ``j`` (size or distance, ``>= 1``) and the
        group (matrix) it is counted in, ``0..n_groups - 1``.
    n_groups
        Number of matrices.
    n_voxels
        ``N_v`` of each group (for the zone percentage).

    Returns
    -------
    dict
        Formula → ``float64`` array ``(n_groups,)``; NaN for a group without zones.
    """
    g = np.asarray(group, dtype=np.int64)
    lv = np.asarray(level, dtype=np.int64)
    val = np.asarray(value, dtype=np.int64)
    i = lv.astype(np.float64)
    j = val.astype(np.float64)
    ns = np.bincount(g, minlength=n_groups).astype(np.float64)
    empty = ns == 0
    if not len(g):
        return {f: np.full(n_groups, np.nan) for f in FORMULAS}

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=w, minlength=n_groups)

    def counts(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # zones per distinct (group, *cols): the non-zero matrix cells or marginals;
        # one int64 key per zone (a 1-D unique is far faster than unique(axis=1))
        radix = [int(c.max()) + 1 for c in cols]
        base = int(np.prod(radix, dtype=object))
        if n_groups * base >= 2**63:
            u, c = np.unique(np.stack([g, *cols]), axis=1, return_counts=True)
            return u[0], c.astype(np.float64)
        key = g.copy()
        for col, r in zip(cols, radix, strict=True):
            key = key * r + col
        uk, c = np.unique(key, return_counts=True)
        return uk // base, c.astype(np.float64)

    g_i, c_i = counts(lv)
    g_j, c_j = counts(val)
    g_ij, c_ij = counts(lv, val)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_i = total(i) / ns
        mu_j = total(j) / ns
        p = c_ij / ns[g_ij]
        glnu = np.bincount(g_i, weights=c_i**2, minlength=n_groups)
        nu = np.bincount(g_j, weights=c_j**2, minlength=n_groups)
        out = {
            "se": total(1.0 / j**2) / ns,
            "le": total(j**2) / ns,
            "lgze": total(1.0 / i**2) / ns,
            "hgze": total(i**2) / ns,
            "slge": total(1.0 / (i**2 * j**2)) / ns,
            "shge": total(i**2 / j**2) / ns,
            "llge": total(j**2 / i**2) / ns,
            "lhge": total(i**2 * j**2) / ns,
            "glnu": glnu / ns,
            "glnu_norm": glnu / ns**2,
            "nu": nu / ns,
            "nu_norm": nu / ns**2,
            "z_perc": ns / np.asarray(n_voxels, dtype=np.float64),
            "gl_var": total((i - mu_i[g]) ** 2) / ns,
            "var": total((j - mu_j[g]) ** 2) / ns,
            "entr": -np.bincount(g_ij, weights=p * np.log2(p), minlength=n_groups),
        }
    for v in out.values():
        v[empty] = np.nan
    return out


def zone_aggregate(
    levels: np.ndarray,
    aggregations: Sequence[str],
    *,
    mask: np.ndarray | None = None,
    by_distance: bool = False,
) -> dict[str, dict[str, float]]:
    """The :data:`FORMULAS` of each requested aggregation of :data:`ZONE_AGGREGATIONS`.

    Parameters
    ----------
    levels
        Grey levels ``z, y, x`` (0 outside the ROI).
    aggregations
        Keys of :data:`ZONE_AGGREGATIONS`.
    mask
        The morphological ROI for the distance map (default ``levels > 0``).
    by_distance
        Count zones by distance (GLDZM) instead of size (GLSZM).

    Returns
    -------
    dict
        ``aggregation -> {formula: value}``.
    """
    lv = _as_3d(np.asarray(levels))
    roi = lv > 0
    morph = roi if mask is None else _as_3d(np.asarray(mask, dtype=bool))
    if morph.shape != lv.shape:
        raise ValueError(f"mask shape {morph.shape} differs from levels shape {lv.shape}")

    def zones(per_slice: bool) -> tuple[Zones, np.ndarray]:
        dmap = border_distance(morph, per_slice=per_slice) if by_distance else None
        z = find_zones(lv, per_slice=per_slice, distance=dmap)
        return z, (z.distance if by_distance else z.size)

    def single(z: Zones, value: np.ndarray) -> dict[str, float]:
        feats = zone_feature_stack(
            z.level,
            value,
            np.zeros(len(z), np.int64),
            n_groups=1,
            n_voxels=np.array([roi.sum()]),
        )
        return {k: float(v[0]) for k, v in feats.items()}

    res: dict[str, dict[str, float]] = {}
    if "3d_merged" in aggregations:
        res["3d_merged"] = single(*zones(False))
    if {"2d_averaged", "2_5d_merged"} & set(aggregations):
        z2, v2 = zones(True)
        if "2d_averaged" in aggregations:
            per_slice = zone_feature_stack(
                z2.level,
                v2,
                z2.slice,
                n_groups=lv.shape[0],
                n_voxels=roi.sum(axis=(1, 2)),
            )
            res["2d_averaged"] = mean_finite(per_slice)
        if "2_5d_merged" in aggregations:
            res["2_5d_merged"] = single(z2, v2)
    return res
