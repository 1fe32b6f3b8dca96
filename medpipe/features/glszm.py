"""Grey level size zone matrix (GLSZM) features, IBSI 1 section 3.8 (family ``9SAK``).

A zone is a connected set of ROI voxels of one grey level (26-connected in 3-D,
8-connected in a slice for 2-D); ``s[i, j]`` counts the zones of level ``i`` and size
``j`` voxels.  The zones, the sixteen formulas, the aggregations (``3d_merged``,
``2d_averaged``, ``2_5d_merged``: IBSI's 3D, 2D and 2.5D) and the values of a constant
ROI are described in :mod:`medpipe.features.zones`.

Feature names are ``glszm_<feature>_<aggregation>``:

=============  ======================================  ====
feature        IBSI                                    code
=============  ======================================  ====
``sze``        small zone emphasis                     5QRC
``lze``        large zone emphasis                     48P8
``lgze``       low grey level zone emphasis            XMSY
``hgze``       high grey level zone emphasis           5GN9
``szlge``      small zone low grey level emphasis      5RAI
``szhge``      small zone high grey level emphasis     HW1V
``lzlge``      large zone low grey level emphasis      YH51
``lzhge``      large zone high grey level emphasis     J17V
``glnu``       grey level non-uniformity               JNSA
``glnu_norm``  normalised grey level non-uniformity    Y1RO
``zsnu``       zone size non-uniformity                4JP3
``zsnu_norm``  normalised zone size non-uniformity     VB3A
``z_perc``     zone percentage                         P30P
``gl_var``     grey level variance                     BYLV
``zs_var``     zone size variance                      3NSA
``zs_entr``    zone size entropy                       GU8N
=============  ======================================  ====
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medpipe.features.aggregate import aggregated_names, as_levels, check_aggregations
from medpipe.features.registry import Family, register_family
from medpipe.features.zones import (
    FORMULAS,
    ZONE_AGGREGATIONS,
    find_zones,
    zone_aggregate,
    zone_matrices,
)

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["FEATURES", "glszm_matrices", "glszm_features", "glszm_feature_names"]

FEATURES: tuple[str, ...] = (
    "sze",
    "lze",
    "lgze",
    "hgze",
    "szlge",
    "szhge",
    "lzlge",
    "lzhge",
    "glnu",
    "glnu_norm",
    "zsnu",
    "zsnu_norm",
    "z_perc",
    "gl_var",
    "zs_var",
    "zs_entr",
)
_FORMULA = dict(zip(FEATURES, FORMULAS, strict=True))


def glszm_matrices(
    levels: np.ndarray, *, n_levels: int | None = None, per_slice: bool = False
) -> np.ndarray:
    """The size zone matrix of ``levels`` (``z, y, x``, 0 outside the ROI).

    Parameters
    ----------
    levels
        Grey levels ``1..N_g`` (a 2-D array is one slice).
    n_levels
        Matrix rows ``N_g``; defaults to the highest level present.
    per_slice
        One matrix of the 2-D zones of each slice instead of the 3-D one.

    Returns
    -------
    numpy.ndarray
        ``float64`` counts ``(N_g, N_z)``, or ``(n_z, N_g, N_z)`` with ``per_slice``;
        ``N_z`` is the largest zone size (at least 1).
    """
    lv, ng = as_levels(levels, n_levels)
    z = find_zones(lv, per_slice=per_slice)
    if per_slice:
        return zone_matrices(z.level, z.size, z.slice, n_levels=ng, n_groups=lv.shape[0])
    return zone_matrices(z.level, z.size, n_levels=ng)[0]


def glszm_feature_names(aggregations: Sequence[str] = tuple(ZONE_AGGREGATIONS)) -> list[str]:
    """Feature names ``glszm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("glszm", FEATURES, aggregations)


def glszm_features(
    levels: np.ndarray,
    *,
    aggregations: Sequence[str] = tuple(ZONE_AGGREGATIONS),
) -> dict[str, float]:
    """IBSI GLSZM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``>= 1``, 0 outside the ROI, dims ``z, y, x`` (a 2-D array
        is one slice).  Empty rows of the matrix change no feature, so ``N_g`` is not
        needed.
    aggregations
        Keys of :data:`medpipe.features.zones.ZONE_AGGREGATIONS`.

    Returns
    -------
    dict
        ``glszm_<feature>_<aggregation> -> value`` (NaN for an empty ROI).
    """
    check_aggregations(aggregations, what="GLSZM", known=ZONE_AGGREGATIONS)
    res = zone_aggregate(levels, aggregations)
    return {f"glszm_{f}_{a}": res[a][_FORMULA[f]] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return glszm_feature_names(config.glszm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    return glszm_features(sample.levels, aggregations=sample.config.glszm_aggregations)


FAMILY = register_family(Family("glszm", _names, _compute))
