"""GLDZM against a brute-force border distance and flood-filled zones, IBSI's formulas
written out on the matrix, a hand-checked 5 × 5 image, the morphological mask, and the
constant and empty ROI.

The IBSI digital-phantom rows are in ``test_ibsi_phantom.py``; the lazy path of both
zone families is checked in ``test_glszm.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from medpipe.features import FeatureConfig, compute_features
from medpipe.features.gldzm import FEATURES, gldzm_feature_names, gldzm_features, gldzm_matrices
from medpipe.features.zones import ZONE_AGGREGATIONS, border_distance
from tests.features.test_glszm import (
    HAND,
    random_levels,
    reference_aggregations,
    reference_matrix,
    reference_zones,
)

AGGS = tuple(ZONE_AGGREGATIONS)


def reference_distance(mask: np.ndarray, *, per_slice: bool) -> np.ndarray:
    """Taxicab distance of each ROI voxel to the nearest voxel outside the ROI, the
    virtual voxels beyond each face of the array included; in-plane with ``per_slice``."""
    out = np.zeros(mask.shape, np.int64)
    outside = np.argwhere(~mask)
    axes = (1, 2) if per_slice else (0, 1, 2)
    for p in np.argwhere(mask):
        best = min(min(p[a] + 1, mask.shape[a] - p[a]) for a in axes)
        for q in outside:
            if per_slice and q[0] != p[0]:
                continue
            best = min(best, int(np.abs(p - q).sum()))
        out[tuple(p)] = best
    return out


def _distance_matrices(levels: np.ndarray, per_slice: bool, mask=None) -> np.ndarray:
    ng = int(levels.max())
    morph = levels > 0 if mask is None else mask
    dist = reference_distance(morph, per_slice=per_slice)
    zones = reference_zones(levels, per_slice=per_slice)

    def value(zone: list) -> int:
        return min(int(dist[v]) for v in zone)

    if not per_slice:
        return reference_matrix(levels, zones, value, ng, max(levels.shape))
    return np.array(
        [
            reference_matrix(levels, [zn for zn in zones if zn[0][0] == z], value, ng,
                             max(levels.shape))
            for z in range(levels.shape[0])
        ]
    )


@pytest.mark.parametrize("per_slice", [False, True])
def test_border_distance_matches_brute_force(per_slice: bool) -> None:
    rng = np.random.default_rng(5)
    mask = rng.random((4, 7, 9)) > 0.15
    np.testing.assert_array_equal(
        border_distance(mask, per_slice=per_slice), reference_distance(mask, per_slice=per_slice)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_matrices_match_brute_force(seed: int) -> None:
    lv = random_levels(seed, holes=0.1)
    for per_slice in (False, True):
        got = gldzm_matrices(lv, n_levels=3, per_slice=per_slice)
        ref = _distance_matrices(lv, per_slice)
        ref = ref[..., : got.shape[-1]]
        assert ref.sum() == got.sum()  # no zone beyond the largest distance was cut off
        np.testing.assert_array_equal(got, ref, err_msg=f"per_slice={per_slice}")


@pytest.mark.parametrize("seed", [3, 4])
def test_features_match_formulas_on_the_matrix(seed: int) -> None:
    lv = random_levels(seed, shape=(3, 7, 7), ng=3, holes=0.1)
    got = gldzm_features(lv)
    ref = reference_aggregations(lv, _distance_matrices)
    for agg in AGGS:
        values = [got[f"gldzm_{f}_{agg}"] for f in FEATURES]
        np.testing.assert_allclose(values, ref[agg], rtol=1e-12, err_msg=agg)
    assert list(got) == gldzm_feature_names()


def test_morphological_mask_sets_the_distances() -> None:
    """IBSI measures distances in the morphological mask, which may be larger than the
    ROI the zones are taken from (after re-segmentation)."""
    lv = random_levels(6, shape=(3, 8, 8), ng=3, holes=0.0)
    morph = np.ones(lv.shape, bool)
    lv[:, 3:5, 3:5] = 0  # excluded from the intensity ROI only
    got = gldzm_features(lv, mask=morph)
    ref = reference_aggregations(lv, lambda lv_, s: _distance_matrices(lv_, s, morph))
    for agg in AGGS:
        values = [got[f"gldzm_{f}_{agg}"] for f in FEATURES]
        np.testing.assert_allclose(values, ref[agg], rtol=1e-12, err_msg=agg)
    assert got["gldzm_lde_2d_averaged"] != gldzm_features(lv)["gldzm_lde_2d_averaged"]
    with pytest.raises(ValueError, match="morphological mask must hold every ROI voxel"):
        gldzm_features(lv, mask=np.zeros(lv.shape, bool))


def test_hand_checked_example() -> None:
    """In-plane distances of the 5 × 5 image are 1 on the edge, 2 inside, 3 at the centre:
    the level 1 zone (no voxel on the edge) lies at distance 2, all other zones at 1.
    As a single slice, every voxel is on the 3-D border (distance 1)."""
    np.testing.assert_array_equal(
        gldzm_matrices(HAND, per_slice=True)[0], [[0, 1], [2, 0], [3, 0], [2, 0], [3, 0]]
    )
    np.testing.assert_array_equal(gldzm_matrices(HAND), [[1], [2], [3], [2], [3]])
    got = gldzm_features(HAND)
    ns = 11
    for agg in ("2d_averaged", "2_5d_merged"):
        assert got[f"gldzm_sde_{agg}"] == pytest.approx((10 + 1 / 4) / ns)
        assert got[f"gldzm_lde_{agg}"] == pytest.approx((10 + 4) / ns)
        assert got[f"gldzm_zdnu_{agg}"] == pytest.approx((10**2 + 1) / ns)
        sdhge = (1 / 4 + 4 * 2 + 9 * 3 + 16 * 2 + 25 * 3) / ns
        assert got[f"gldzm_sdhge_{agg}"] == pytest.approx(sdhge)
    assert got["gldzm_sde_3d_merged"] == got["gldzm_lde_3d_merged"] == 1
    assert got["gldzm_zd_var_3d_merged"] == 0


def test_constant_and_empty_roi() -> None:
    lv = np.zeros((5, 6, 6), np.int32)
    lv[1:4, 1:4, 1:4] = 2  # one zone touching the border: distance 1
    got = gldzm_features(lv)
    for agg, zones, nv in (("3d_merged", 1, 27), ("2d_averaged", 1, 9), ("2_5d_merged", 3, 27)):
        expected = {
            "sde": 1, "lde": 1, "lgze": 1 / 4, "hgze": 4, "sdlge": 1 / 4, "sdhge": 4,
            "ldlge": 1 / 4, "ldhge": 4, "glnu": zones, "glnu_norm": 1, "zdnu": zones,
            "zdnu_norm": 1, "z_perc": zones / nv, "gl_var": 0, "zd_var": 0, "zd_entr": 0,
        }
        for f, v in expected.items():
            assert got[f"gldzm_{f}_{agg}"] == pytest.approx(v, abs=1e-12), (f, agg)
    empty = gldzm_features(np.zeros((2, 3, 3), np.int32))
    assert all(np.isnan(v) for v in empty.values())
    cfg = FeatureConfig(families=("gldzm",), gldzm_aggregations=("3d_merged",))
    out = compute_features(np.ones((2, 3, 3)), np.zeros((2, 3, 3), bool), spacing=(1, 1, 1),
                           config=cfg)
    assert list(out) == [f"gldzm_{f}_3d_merged" for f in FEATURES]
    assert all(np.isnan(v) for v in out.values())
