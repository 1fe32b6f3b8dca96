"""NGTDM (IBSI 3.10) against a voxel-by-voxel reference written from the IBSI text, and
NGTDM/NGLDM against pyradiomics's published baseline (shared data)."""

from __future__ import annotations

import ast
import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from medpipe.features import FeatureConfig, compute_features
from medpipe.features.ngtdm import FEATURES, MAX_COARSENESS, ngtdm_features, ngtdm_matrices


def _reference_matrix(lv: np.ndarray, ng: int, *, in_plane: bool) -> tuple[list, list]:
    """s_i and n_i by visiting every ROI voxel and its neighbours (IBSI's definition)."""
    s, n = [0.0] * ng, [0] * ng
    nz, ny, nx = lv.shape
    dzs = (0,) if in_plane else (-1, 0, 1)
    for z, y, x in itertools.product(range(nz), range(ny), range(nx)):
        g = int(lv[z, y, x])
        if g == 0:
            continue
        nb = []
        for dz, dy, dx in itertools.product(dzs, (-1, 0, 1), (-1, 0, 1)):
            if (dz, dy, dx) == (0, 0, 0):
                continue
            q = (z + dz, y + dy, x + dx)
            if all(0 <= c < m for c, m in zip(q, lv.shape, strict=True)) and lv[q] > 0:
                nb.append(int(lv[q]))
        if nb:  # a valid neighbourhood: at least one neighbour in the ROI
            s[g - 1] += abs(g - sum(nb) / len(nb))
            n[g - 1] += 1
    return s, n


def _reference_features(s: list, n: list) -> dict[str, float]:
    nvc = sum(n)
    if nvc == 0:
        return dict.fromkeys(FEATURES, float("nan"))
    p = [c / nvc for c in n]
    levels = [k for k in range(len(n)) if p[k] > 0]
    ngp = len(levels)
    ps = sum(p[k] * s[k] for k in range(len(n)))
    coarseness = 1 / ps if ps > 0 else MAX_COARSENESS
    if ngp > 1:
        dyn = sum(p[a] * p[b] * (a - b) ** 2 for a in levels for b in levels)
        contrast = dyn / (ngp * (ngp - 1)) * sum(s) / nvc
        den = sum(abs((a + 1) * p[a] - (b + 1) * p[b]) for a in levels for b in levels)
        busyness = ps / den if den > 0 else 0.0
    else:
        contrast = busyness = 0.0
    complexity = (
        sum(
            abs(a - b) * (p[a] * s[a] + p[b] * s[b]) / (p[a] + p[b])
            for a in levels
            for b in levels
        )
        / nvc
    )
    num = sum((p[a] + p[b]) * (a - b) ** 2 for a in levels for b in levels)
    strength = num / sum(s) if sum(s) > 0 else 0.0
    return {
        "coarseness": coarseness,
        "contrast": contrast,
        "busyness": busyness,
        "complexity": complexity,
        "strength": strength,
    }


def _random_levels(seed: int, shape: tuple[int, int, int], ng: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lv = rng.integers(1, ng + 1, size=shape).astype(np.int32)
    lv[rng.random(shape) < 0.3] = 0  # an irregular ROI with holes and isolated voxels
    return lv


@pytest.mark.parametrize("seed", [0, 1])
def test_ngtdm_matches_voxel_by_voxel_reference(seed: int) -> None:
    ng = 5
    lv = _random_levels(seed, (4, 6, 7), ng)
    s3, n3 = _reference_matrix(lv, ng, in_plane=False)
    m3 = ngtdm_matrices(lv, n_levels=ng)
    np.testing.assert_allclose(m3[0], s3, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(m3[1], n3)
    m2 = ngtdm_matrices(lv, n_levels=ng, per_slice=True)
    per_slice = []
    for z in range(lv.shape[0]):
        s2, n2 = _reference_matrix(lv[z : z + 1], ng, in_plane=True)
        np.testing.assert_allclose(m2[z, 0], s2, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(m2[z, 1], n2)
        per_slice.append((s2, n2))

    got = ngtdm_features(
        lv, n_levels=ng, aggregations=("3d_merged", "3d_averaged", "2_5d_merged", "2d_averaged")
    )
    want3 = _reference_features(s3, n3)
    merged = _reference_features(
        [sum(ps[0][k] for ps in per_slice) for k in range(ng)],
        [sum(ps[1][k] for ps in per_slice) for k in range(ng)],
    )
    slices = [_reference_features(*ps) for ps in per_slice]
    for f in FEATURES:
        assert got[f"ngtdm_{f}_3d_merged"] == pytest.approx(want3[f], rel=1e-10), f
        assert got[f"ngtdm_{f}_3d_averaged"] == got[f"ngtdm_{f}_3d_merged"]
        assert got[f"ngtdm_{f}_2_5d_merged"] == pytest.approx(merged[f], rel=1e-10), f
        mean2d = np.nanmean([v[f] for v in slices])
        assert got[f"ngtdm_{f}_2d_averaged"] == pytest.approx(mean2d, rel=1e-10), f


def test_ngtdm_single_grey_level_and_no_neighbours() -> None:
    lv = np.zeros((3, 4, 4), np.int32)
    lv[1, 1:3, 1:3] = 2  # one flat 2x2 patch: differences are all 0
    got = ngtdm_features(lv, n_levels=3, aggregations=("3d_merged",))
    assert got["ngtdm_coarseness_3d_merged"] == MAX_COARSENESS
    for f in ("contrast", "busyness", "strength"):
        assert got[f"ngtdm_{f}_3d_merged"] == 0.0
    lone = np.zeros((3, 3, 3), np.int32)
    lone[1, 1, 1] = 1  # no voxel has a neighbour in the ROI: no valid neighbourhood
    assert all(np.isnan(v) for v in ngtdm_features(lone, n_levels=1).values())


def test_ngtdm_family_empty_roi_is_nan_and_config_checked() -> None:
    cfg = FeatureConfig(families=("ngtdm",), bin_count=8)
    img = np.random.default_rng(2).normal(size=(3, 8, 8))
    empty = compute_features(img, np.zeros(img.shape, bool), spacing=(1, 1, 1), config=cfg)
    assert list(empty) == cfg.feature_names() and len(empty) == 15
    assert all(np.isnan(v) for v in empty.values())
    full = compute_features(img, None, spacing=(1, 1, 1), config=cfg)
    assert all(np.isfinite(v) for v in full.values())
    with pytest.raises(ValueError, match="ngtdm_aggregations"):
        FeatureConfig(ngtdm_aggregations=("4d",))


# --- secondary check: pyradiomics's published baseline (shared data) ----------------------

#: pyradiomics ngtdm / gldm → medpipe feature; pyradiomics's 3-D matrices are IBSI's 3D, its
#: ``force2D`` matrices summed over the slices IBSI's 2.5D merged (it has no 2D averaging),
#: and it has no dependence count percentage (always 1 under IBSI's rule)
PYRAD = {
    "ngtdm": {
        k: f"ngtdm_{k.lower()}"
        for k in ("Coarseness", "Contrast", "Busyness", "Complexity", "Strength")
    },
    "gldm": {
        "SmallDependenceEmphasis": "ngldm_lde",
        "LargeDependenceEmphasis": "ngldm_hde",
        "LowGrayLevelEmphasis": "ngldm_lgce",
        "HighGrayLevelEmphasis": "ngldm_hgce",
        "SmallDependenceLowGrayLevelEmphasis": "ngldm_ldlge",
        "SmallDependenceHighGrayLevelEmphasis": "ngldm_ldhge",
        "LargeDependenceLowGrayLevelEmphasis": "ngldm_hdlge",
        "LargeDependenceHighGrayLevelEmphasis": "ngldm_hdhge",
        "GrayLevelNonUniformity": "ngldm_glnu",
        "DependenceNonUniformity": "ngldm_dcnu",
        "DependenceNonUniformityNormalized": "ngldm_dcnu_norm",
        "GrayLevelVariance": "ngldm_gl_var",
        "DependenceVariance": "ngldm_dc_var",
        "DependenceEntropy": "ngldm_dc_entr",
    },
}


@pytest.mark.parametrize("case", ["brain1", "brain2", "breast1"])
def test_ngtdm_and_ngldm_match_pyradiomics_baseline(shared_data: Path, case: str) -> None:
    nrrd = pytest.importorskip("nrrd", reason="pynrrd (dev extra) reads the NRRD test cases")
    root = shared_data / "reference" / "pyradiomics" / "data"
    tables = {}
    for cls in PYRAD:
        with open(root / "baseline" / f"baseline_{cls}.csv", newline="", encoding="utf-8") as fh:
            tables[cls] = {r["featureName"]: r for r in csv.DictReader(fh)}
        for col, force2d in ((case, False), (f"{case}_2d", True)):
            cfg = ast.literal_eval(tables[cls]["diagnostics_Configuration_Settings"][col])
            assert cfg["distances"] == [1] and cfg["force2D"] is force2d
            assert cfg.get("binWidth", 25) == 25 and cfg.get("gldm_a", 0) == 0
            assert cfg["resampledPixelSpacing"] is None and cfg["resegmentRange"] is None
    img, hdr = nrrd.read(str(root / f"{case}_image.nrrd"))
    lab, _ = nrrd.read(str(root / f"{case}_label.nrrd"))
    image = np.transpose(img, (2, 1, 0)).astype(np.float64)  # NRRD (x, y, z) -> (z, y, x)
    mask = np.transpose(lab, (2, 1, 0)) == 1
    spacing = tuple(np.linalg.norm(np.asarray(hdr["space directions"], float), axis=1)[::-1])
    aggs = ("3d_merged", "2_5d_merged")
    cfg = FeatureConfig(
        families=("ngtdm", "ngldm"),
        bin_width=25,
        min_value=math.floor(float(image[mask].min()) / 25) * 25,  # pyradiomics's bin edges
        ngtdm_aggregations=aggs,
        ngldm_aggregations=aggs,
    )
    feats = compute_features(image, mask, spacing=spacing, config=cfg)
    bad = {}
    for cls, names in PYRAD.items():
        for pname, mname in names.items():
            for col, agg in ((case, "3d_merged"), (f"{case}_2d", "2_5d_merged")):
                ref = float(tables[cls][f"original_{cls}_{pname}"][col])
                if not np.isclose(feats[f"{mname}_{agg}"], ref, rtol=1e-9, atol=1e-12):
                    bad[f"{cls} {pname} [{col}]"] = (ref, feats[f"{mname}_{agg}"])
    assert not bad, bad
