"""Grey level distance zone matrix (GLDZM) features, IBSI 1 section 3.9 (family ``VMDZ``).

The zones are those of the GLSZM (:mod:`medpipe.features.zones`); ``d[i, j]`` counts
the zones of level ``i`` whose distance to the ROI border is ``j``.  A voxel's distance
is IBSI's taxicab distance to the nearest voxel outside the morphological ROI (voxels
beyond the image's edge count as outside), 1 on the border
(:func:`medpipe.features.zones.border_distance`: 6 face neighbours in 3-D, the 4
in-plane ones per slice for the 2D and 2.5D aggregations); a zone's distance is the
smallest distance of its voxels.  The distances use the morphological mask
(``Sample.morphology_mask``, the ROI before IBSI re-segmentation, see
:mod:`medpipe.features.ibsi_processing`); the zones use the intensity mask.  Without
re-segmentation the two are the same ROI.

Feature names are ``gldzm_<feature>_<aggregation>`` (aggregations ``3d_merged``,
``2d_averaged``, ``2_5d_merged``: IBSI's 3D, 2D and 2.5D):

=============  ==========================================  ====
feature        IBSI                                        code
=============  ==========================================  ====
``sde``        small distance emphasis                     0GBI
``lde``        large distance emphasis                     MB4I
``lgze``       low grey level zone emphasis                S1RA
``hgze``       high grey level zone emphasis               K26C
``sdlge``      small distance low grey level emphasis      RUVG
``sdhge``      small distance high grey level emphasis     DKNJ
``ldlge``      large distance low grey level emphasis      A7WM
``ldhge``      large distance high grey level emphasis     KLTH
``glnu``       grey level non-uniformity                   VFT7
``glnu_norm``  normalised grey level non-uniformity        7HP3
``zdnu``       zone distance non-uniformity                V294
``zdnu_norm``  normalised zone distance non-uniformity     IATH
``z_perc``     zone percentage                             VIWW
``gl_var``     grey level variance                         QK93
``zd_var``     zone distance variance                      7WT1
``zd_entr``    zone distance entropy                       GBDU
=============  ==========================================  ====
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
    border_distance,
    find_zones,
    zone_aggregate,
    zone_matrices,
)

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["FEATURES", "gldzm_matrices", "gldzm_features", "gldzm_feature_names"]

FEATURES: tuple[str, ...] = (
    "sde",
    "lde",
    "lgze",
    "hgze",
    "sdlge",
    "sdhge",
    "ldlge",
    "ldhge",
    "glnu",
    "glnu_norm",
    "zdnu",
    "zdnu_norm",
    "z_perc",
    "gl_var",
    "zd_var",
    "zd_entr",
)
_FORMULA = dict(zip(FEATURES, FORMULAS, strict=True))


def gldzm_matrices(
    levels: np.ndarray,
    *,
    n_levels: int | None = None,
    mask: np.ndarray | None = None,
    per_slice: bool = False,
) -> np.ndarray:
    """The distance zone matrix of ``levels`` (``z, y, x``, 0 outside the ROI).

    Parameters
    ----------
    levels
        Grey levels ``1..N_g`` (a 2-D array is one slice).
    n_levels
        Matrix rows ``N_g``; defaults to the highest level present.
    mask
        The morphological ROI the distances are measured in (default ``levels > 0``);
        it must hold every ROI voxel.
    per_slice
        One matrix of the 2-D zones and in-plane distances of each slice.

    Returns
    -------
    numpy.ndarray
        ``float64`` counts ``(N_g, N_d)``, or ``(n_z, N_g, N_d)`` with ``per_slice``;
        ``N_d`` is the largest zone distance (at least 1).
    """
    lv, ng = as_levels(levels, n_levels)
    morph = lv > 0 if mask is None else np.asarray(mask, dtype=bool)
    if morph.ndim == 2:
        morph = morph[None]
    if morph.shape != lv.shape:
        raise ValueError(f"mask shape {morph.shape} differs from levels shape {lv.shape}")
    dmap = border_distance(morph, per_slice=per_slice)
    z = find_zones(lv, per_slice=per_slice, distance=dmap)
    dist = z.distance if z.distance is not None else z.size  # always set: dmap given
    if per_slice:
        return zone_matrices(z.level, dist, z.slice, n_levels=ng, n_groups=lv.shape[0])
    return zone_matrices(z.level, dist, n_levels=ng)[0]


def gldzm_feature_names(aggregations: Sequence[str] = tuple(ZONE_AGGREGATIONS)) -> list[str]:
    """Feature names ``gldzm_<feature>_<aggregation>`` in output order."""
    return aggregated_names("gldzm", FEATURES, aggregations)


def gldzm_features(
    levels: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    aggregations: Sequence[str] = tuple(ZONE_AGGREGATIONS),
) -> dict[str, float]:
    """IBSI GLDZM features of a discretised ROI for the requested aggregations.

    Parameters
    ----------
    levels
        Integer grey levels ``>= 1``, 0 outside the ROI, dims ``z, y, x`` (a 2-D array
        is one slice).
    mask
        The morphological ROI for the distances (default ``levels > 0``); it must hold
        every ROI voxel.
    aggregations
        Keys of :data:`medpipe.features.zones.ZONE_AGGREGATIONS`.

    Returns
    -------
    dict
        ``gldzm_<feature>_<aggregation> -> value`` (NaN for an empty ROI).
    """
    check_aggregations(aggregations, what="GLDZM", known=ZONE_AGGREGATIONS)
    res = zone_aggregate(levels, aggregations, mask=mask, by_distance=True)
    return {f"gldzm_{f}_{a}": res[a][_FORMULA[f]] for a in aggregations for f in FEATURES}


def _names(config: FeatureConfig) -> list[str]:
    return gldzm_feature_names(config.gldzm_aggregations)


def _compute(sample: Sample) -> dict[str, float]:
    return gldzm_features(
        sample.levels,
        mask=sample.morphology_mask_roi,  # IBSI: distances to the morphological mask's border
        aggregations=sample.config.gldzm_aggregations,
    )


FAMILY = register_family(Family("gldzm", _names, _compute))
