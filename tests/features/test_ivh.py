"""Intensity-volume histogram (IBSI 3.5) against a direct reference, a hand-worked case and
IBSI's CT phantom (configuration A, shared data)."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig, compute_features
from medpipe.features.ivh import ivh_features


def _reference(x: np.ndarray, lo: int, hi: int, a: float = 0.0, b: float = 1.0) -> dict:
    """IBSI's definitions evaluated one discretised intensity at a time."""
    levels = list(range(lo, hi + 1))
    nu = {i: float(np.mean(x >= i)) for i in levels}
    gamma = {i: (i - lo) / (hi - lo) if hi > lo else 0.0 for i in levels}

    def v(frac: float) -> float:
        return max(nu[i] for i in levels if gamma[i] >= frac - 1e-12)

    def i_at(frac: float) -> float:
        hits = [i for i in levels if nu[i] <= frac + 1e-12]
        return a + b * (min(hits) if hits else hi + 1)

    auc = 0.0
    for i, j in zip(levels[:-1], levels[1:], strict=True):
        auc += (gamma[j] - gamma[i]) * (nu[i] + nu[j]) / 2
    out = {"v10": v(0.1), "v90": v(0.9), "i10": i_at(0.1), "i90": i_at(0.9), "auc": auc}
    out["v10_minus_v90"] = out["v10"] - out["v90"]
    out["i10_minus_i90"] = out["i10"] - out["i90"]
    return {f"ivh_{k}": val for k, val in out.items()}


def test_ivh_hand_worked() -> None:
    # nu over i = 1..6: 1.0 .7 .6 .4 .3 .3; gamma 0 .2 .4 .6 .8 1
    got = ivh_features(np.array([1, 1, 1, 2, 3, 3, 4, 6, 6, 6]))
    assert got["ivh_v10"] == pytest.approx(0.7)
    assert got["ivh_v90"] == pytest.approx(0.3)
    assert got["ivh_i90"] == 2
    assert got["ivh_i10"] == 7  # even the top intensity fills 30 % > 10 %
    assert got["ivh_auc"] == pytest.approx(0.2 * (0.85 + 0.65 + 0.5 + 0.35 + 0.3))
    assert got["ivh_v10_minus_v90"] == pytest.approx(0.4)
    assert got["ivh_i10_minus_i90"] == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ivh_discrete_intensities_match_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.gamma(2.0, 30.0, size=500)) - 40  # CT-like integers, some negative
    got = ivh_features(x)
    want = _reference(x, int(x.min()), int(x.max()))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_ivh_fixed_bin_size_reports_bin_centres_and_fixed_bin_number_levels() -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(0.3, 7.9, size=400)  # PET-like SUVs
    got = ivh_features(x, bin_width=0.5, min_value=0.0)
    d = np.floor(x / 0.5).astype(int) + 1
    want = _reference(d, 1, int(d.max()), a=-0.25, b=0.5)  # bin centre: (d - 0.5) * 0.5
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert (got["ivh_i90"] / 0.5 + 0.5) % 1 == pytest.approx(0.0, abs=1e-9)
    fbn = ivh_features(x, bin_count=16)
    lv = np.minimum(np.floor(16 * (x - x.min()) / (x.max() - x.min())).astype(int) + 1, 16)
    assert fbn == pytest.approx(_reference(lv, 1, 16), rel=1e-12, abs=1e-12)


def test_ivh_single_intensity_and_empty_roi() -> None:
    one = ivh_features(np.full(9, 4.0))
    assert one["ivh_auc"] == 0.0 and one["ivh_v10"] == 1.0 and one["ivh_v10_minus_v90"] == 0
    cfg = FeatureConfig(families=("ivh",), bin_count=None)
    img = np.random.default_rng(1).integers(1, 9, size=(2, 5, 5)).astype(float)
    empty = compute_features(img, np.zeros(img.shape, bool), spacing=(1, 1, 1), config=cfg)
    assert list(empty) == cfg.feature_names() and all(np.isnan(v) for v in empty.values())


def test_ivh_family_takes_its_own_discretisation() -> None:
    img = np.random.default_rng(3).uniform(0, 10, size=(3, 6, 6))
    cfg = FeatureConfig(families=("ivh",), bin_count=8, ivh_bin_width=0.1, min_value=0.0)
    got = compute_features(img, None, spacing=(1, 1, 1), config=cfg)
    assert got == ivh_features(img, bin_width=0.1, min_value=0.0)
    coarse = compute_features(img, None, spacing=(1, 1, 1), config=cfg.model_copy(
        update={"ivh_bin_width": None}))
    assert coarse == ivh_features(img, bin_count=8)
    with pytest.raises(ConfigError, match="ivh_bin_width, ivh_bin_count"):
        FeatureConfig(ivh_bin_width=0.1, ivh_bin_count=100)


def test_ibsi_ct_phantom_config_a(shared_data: Path) -> None:
    """IBSI's CT phantom, configuration A (ROI re-segmented to [-500, 400] HU, HU taken as
    discrete intensities): every IVH row of the reference table within its tolerance."""
    d = shared_data / "reference"
    if not (d / "ibsi1_ct_phantom" / "image" / "phantom.nii.gz").is_file():
        pytest.skip(f"IBSI CT phantom not found under {d}")
    img = nib.load(d / "ibsi1_ct_phantom" / "image" / "phantom.nii.gz")
    msk = nib.load(d / "ibsi1_ct_phantom" / "mask" / "mask.nii.gz")
    image = np.rint(np.asanyarray(img.dataobj).astype(np.float64))  # IBSI: round to integers
    roi = (np.asanyarray(msk.dataobj) > 0) & (image >= -500) & (image <= 400)
    got = ivh_features(image[roi], min_value=-500)
    names = {
        "Volume at intensity fraction": ["ivh_v10", "ivh_v90"],  # IBSI lists 10 % first
        "Intensity at volume fraction": ["ivh_i10", "ivh_i90"],
        "Volume fraction difference between intensity fractions": ["ivh_v10_minus_v90"],
        "Intensity fraction difference between volume fractions": ["ivh_i10_minus_i90"],
    }
    checked, bad = set(), {}
    with open(d / "ibsi1_reference_values.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["family"] != "Intensity-volume histogram features" or r["data"] != "config. A":
                continue
            name = names[r["feature"]].pop(0)
            tol = float(r["tolerance"]) if r["tolerance"] else 0.5  # integers quoted exactly
            checked.add(name)
            if abs(got[name] - float(r["value"])) > tol:
                bad[name] = (float(r["value"]), tol, got[name])
    assert len(checked) == 6 and not bad, bad
