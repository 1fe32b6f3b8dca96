"""NGLDM (IBSI 3.11) against a voxel-by-voxel reference written from the IBSI text, and
NGTDM/NGLDM against IBSI's CT phantom (configuration A, shared data)."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medpipe.features import FeatureConfig, compute_features
from medpipe.features.ngldm import FEATURES, ngldm_features, ngldm_matrices
from tests.features import _ibsi


def _reference_matrix(lv: np.ndarray, ng: int, alpha: int, *, in_plane: bool) -> np.ndarray:
    nn = 9 if in_plane else 27
    s = np.zeros((ng, nn))
    dzs = (0,) if in_plane else (-1, 0, 1)
    for k in itertools.product(*(range(n) for n in lv.shape)):
        g = int(lv[k])
        if g == 0:
            continue
        j = 1  # the centre voxel
        for m in itertools.product(dzs, (-1, 0, 1), (-1, 0, 1)):
            if m == (0, 0, 0):
                continue
            q = tuple(a + b for a, b in zip(k, m, strict=True))
            inside = all(0 <= c < n for c, n in zip(q, lv.shape, strict=True))
            if inside and lv[q] > 0 and abs(int(lv[q]) - g) <= alpha:
                j += 1
        s[g - 1, j - 1] += 1
    return s


def _reference_features(s: np.ndarray) -> dict[str, float]:
    ns = s.sum()
    if ns == 0:
        return dict.fromkeys(FEATURES, float("nan"))
    out = dict.fromkeys(FEATURES, 0.0)
    mu_i = sum((i + 1) * s[i, j] / ns for i, j in np.ndindex(s.shape))
    mu_j = sum((j + 1) * s[i, j] / ns for i, j in np.ndindex(s.shape))
    for (i0, j0), c in np.ndenumerate(s):
        if c == 0:
            continue
        i, j, p = i0 + 1, j0 + 1, c / ns
        out["lde"] += c / j**2 / ns
        out["hde"] += c * j**2 / ns
        out["lgce"] += c / i**2 / ns
        out["hgce"] += c * i**2 / ns
        out["ldlge"] += c / (i**2 * j**2) / ns
        out["ldhge"] += c * i**2 / j**2 / ns
        out["hdlge"] += c * j**2 / i**2 / ns
        out["hdhge"] += c * i**2 * j**2 / ns
        out["gl_var"] += (i - mu_i) ** 2 * p
        out["dc_var"] += (j - mu_j) ** 2 * p
        out["dc_entr"] -= p * math.log2(p)
        out["dc_energy"] += p * p
    rows, cols = s.sum(axis=1), s.sum(axis=0)
    out["glnu"] = sum(r * r for r in rows) / ns
    out["glnu_norm"] = out["glnu"] / ns
    out["dcnu"] = sum(c * c for c in cols) / ns
    out["dcnu_norm"] = out["dcnu"] / ns
    out["dc_perc"] = ns / ns  # every ROI voxel is a centre (N_s = N_v)
    return out


@pytest.mark.parametrize(("seed", "alpha"), [(0, 0), (1, 1)])
def test_ngldm_matches_voxel_by_voxel_reference(seed: int, alpha: int) -> None:
    ng = 4
    rng = np.random.default_rng(seed)
    lv = rng.integers(1, ng + 1, size=(4, 6, 7)).astype(np.int32)
    lv[rng.random(lv.shape) < 0.25] = 0
    m3 = ngldm_matrices(lv, n_levels=ng, alpha=alpha)
    want3 = _reference_matrix(lv, ng, alpha, in_plane=False)
    np.testing.assert_array_equal(m3, want3)
    assert m3.sum() == (lv > 0).sum()  # every ROI voxel is a neighbourhood centre
    m2 = ngldm_matrices(lv, n_levels=ng, alpha=alpha, per_slice=True)
    slices = [_reference_matrix(lv[z : z + 1], ng, alpha, in_plane=True) for z in range(4)]
    np.testing.assert_array_equal(m2, np.stack(slices))

    got = ngldm_features(
        lv,
        n_levels=ng,
        alpha=alpha,
        aggregations=("3d_merged", "3d_averaged", "2_5d_merged", "2d_averaged"),
    )
    f3 = _reference_features(want3)
    merged = _reference_features(sum(slices))
    per_slice = [_reference_features(s) for s in slices]
    for f in FEATURES:
        assert got[f"ngldm_{f}_3d_merged"] == pytest.approx(f3[f], rel=1e-10), f
        assert got[f"ngldm_{f}_3d_averaged"] == got[f"ngldm_{f}_3d_merged"]
        assert got[f"ngldm_{f}_2_5d_merged"] == pytest.approx(merged[f], rel=1e-10), f
        mean2d = np.nanmean([v[f] for v in per_slice])
        assert got[f"ngldm_{f}_2d_averaged"] == pytest.approx(mean2d, rel=1e-10), f


def test_ngldm_family_uses_config_and_empty_roi_is_nan() -> None:
    img = np.random.default_rng(4).normal(size=(3, 9, 9))
    roi = np.zeros(img.shape, bool)
    roi[:, 2:7, 1:8] = True
    a0 = FeatureConfig(families=("ngldm",), bin_count=6)
    a2 = FeatureConfig(families=("ngldm",), bin_count=6, ngldm_alpha=2)
    f0 = compute_features(img, roi, spacing=(1, 1, 1), config=a0)
    f2 = compute_features(img, roi, spacing=(1, 1, 1), config=a2)
    assert len(f0) == 3 * len(FEATURES) and list(f0) == a0.feature_names()
    # a larger alpha makes more neighbours dependent
    assert f2["ngldm_hde_3d_merged"] > f0["ngldm_hde_3d_merged"]
    empty = compute_features(img, np.zeros(img.shape, bool), spacing=(1, 1, 1), config=a0)
    assert all(np.isnan(v) for v in empty.values())


def test_neighbourhood_settings_name_a_new_group_only_when_set() -> None:
    """The new fields at their defaults leave every existing feature group name as it was."""
    base = FeatureConfig(families=("firstorder", "glcm"))
    assert "ngldm_alpha" not in base.canonical_json()
    for change in (
        {"ngldm_alpha": 1},
        {"ngtdm_distance": 2},
        {"ngldm_aggregations": ("3d_merged",)},
        {"ivh_bin_width": 0.1},
    ):
        other = FeatureConfig(families=("firstorder", "glcm"), **change)
        assert other.hash() != base.hash() and other.legacy_hash() != base.legacy_hash()
        assert next(iter(change)) in other.canonical_json()
        assert FeatureConfig.from_dict(other.model_dump()).hash() == other.hash()


def test_ibsi_ct_phantom_config_a(shared_data: Path) -> None:
    """IBSI's CT phantom, configuration A (2D / 2.5D, ROI re-segmented to [-500, 400] HU,
    fixed bin size 25 HU from -500): every NGTDM and NGLDM row within its tolerance."""
    d = shared_data / "reference"
    if not (d / "ibsi1_ct_phantom" / "image" / "phantom.nii.gz").is_file():
        pytest.skip(f"IBSI CT phantom not found under {d}")
    img = nib.load(d / "ibsi1_ct_phantom" / "image" / "phantom.nii.gz")
    msk = nib.load(d / "ibsi1_ct_phantom" / "mask" / "mask.nii.gz")
    # NIfTI (x, y, z) -> (z, y, x); IBSI: round the intensities to integers
    image = np.rint(np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float64))
    roi = np.transpose(np.asanyarray(msk.dataobj), (2, 1, 0)) > 0
    roi &= (image >= -500) & (image <= 400)
    aggs = {"2D": "2d_averaged", "2.5D": "2_5d_merged"}
    cfg = FeatureConfig(
        families=("ngtdm", "ngldm"),
        bin_width=25,
        min_value=-500,
        ngtdm_aggregations=tuple(aggs.values()),
        ngldm_aggregations=tuple(aggs.values()),
    )
    feats = compute_features(image, roi, spacing=(3.0, 0.977, 0.977), config=cfg)
    checked, bad = 0, {}
    with open(d / "ibsi1_reference_values.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["data"] != "config. A" or r["family"] not in _ibsi._NEIGH_MATRIX:
                continue
            prefix, names = _ibsi._NEIGH_MATRIX[r["family"]]
            name = f"{prefix}_{names[r['feature']]}_{aggs[r['aggregation']]}"
            value, tol = float(r["value"]), float(r["tolerance"] or 0.0)
            checked += 1
            if not abs(feats[name] - value) <= tol * (1 + 1e-9):
                bad[name] = (value, tol, feats[name])
    assert checked == 2 * (5 + 17) and not bad, bad
