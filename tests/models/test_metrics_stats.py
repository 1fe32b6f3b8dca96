"""Cluster (patient) bootstrap, calibration and DeLong's test, against independent code."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from medpipe.errors import ModelError
from medpipe.models import calibration as cal
from medpipe.models import compare as cmp
from medpipe.models import metrics as met


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    return y, p


def test_one_sample_per_patient_equals_image_bootstrap() -> None:
    """(a) Every image its own patient: the cluster bootstrap IS the image bootstrap."""
    y, p = _data(80)
    rng = np.random.default_rng(5)
    groups = np.array([f"pat{k}" for k in rng.permutation(80)])  # unsorted keys
    image = met.binary_metrics(y, p, threshold=0.5, n_boot=300, seed=3)
    cluster = met.binary_metrics(y, p, threshold=0.5, n_boot=300, seed=3, groups=groups)
    for k in (*met.METRICS, "brier"):
        assert cluster[k] == image[k], k
    assert cluster["support"]["bootstrap"] == "patient (cluster)"
    assert cluster["support"]["n_patients"] == 80


def test_correlated_images_widen_the_interval() -> None:
    """(b) 40 patients x 10 identical images: there are 40 observations, not 400.

    Replicating every sample k times leaves AUC and accuracy unchanged, so the cluster
    bootstrap of the 400 images resamples exactly like the image bootstrap of the 40
    distinct patients (same seed path), while the image bootstrap of the 400 rows
    pretends to have 10x the data: its interval is about sqrt(10) times too narrow.
    """
    y40, p40 = _data(40, seed=1)
    y = np.repeat(y40, 10)
    p = np.repeat(p40, 10)
    groups = np.repeat([f"p{i:02d}" for i in range(40)], 10)
    per_patient = met.binary_metrics(y40, p40, n_boot=400, seed=7)
    cluster = met.binary_metrics(y, p, n_boot=400, seed=7, groups=groups)
    image = met.binary_metrics(y, p, n_boot=400, seed=7)
    for k in ("auc", "accuracy", "balanced_accuracy", "brier"):
        assert cluster[k]["ci_low"] == pytest.approx(per_patient[k]["ci_low"], abs=1e-12)
        assert cluster[k]["ci_high"] == pytest.approx(per_patient[k]["ci_high"], abs=1e-12)
    width = {name: r["auc"]["ci_high"] - r["auc"]["ci_low"]
             for name, r in (("cluster", cluster), ("image", image))}
    assert width["cluster"] > 2 * width["image"]
    assert image["auc"]["value"] == cluster["auc"]["value"] == pytest.approx(
        roc_auc_score(y40, p40))


def _naive_cluster_ci(y, p, groups, *, n_boot, seed, level=0.95):
    """(c) A straightforward patient bootstrap: dict of patient -> rows, a Python loop."""
    rows: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        rows.setdefault(str(g), []).append(i)
    patients = list(rows)  # insertion order = first appearance
    rng = np.random.default_rng(seed)
    aucs, briers = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(patients), len(patients))
        idx = [i for c in pick for i in rows[patients[c]]]
        yy, pp = y[idx], p[idx]
        briers.append(brier_score_loss(yy, pp))
        if 0 < yy.sum() < len(yy):
            aucs.append(roc_auc_score(yy, pp))
    a = (1 - level) / 2
    return np.quantile(aucs, [a, 1 - a]), np.quantile(briers, [a, 1 - a])


def test_cluster_bootstrap_matches_a_naive_implementation() -> None:
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 6, 30)  # 30 patients with 1-5 images each, shuffled rows
    groups = np.repeat([f"k{i}" for i in range(30)], sizes)
    patient_y = rng.integers(0, 2, 30)
    y = np.repeat(patient_y, sizes)
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, y.size), 0, 1)
    order = rng.permutation(y.size)
    y, p, groups = y[order], p[order], groups[order]
    got = met.binary_metrics(y, p, n_boot=250, seed=2, groups=groups)
    auc_ci, brier_ci = _naive_cluster_ci(y, p, groups, n_boot=250, seed=2)
    assert [got["auc"]["ci_low"], got["auc"]["ci_high"]] == pytest.approx(auc_ci, abs=1e-12)
    assert [got["brier"]["ci_low"], got["brier"]["ci_high"]] == pytest.approx(brier_ci,
                                                                                abs=1e-12)
    assert got["brier"]["value"] == pytest.approx(brier_score_loss(y, p))


def test_bootstrap_indices_keep_patients_whole() -> None:
    groups = np.array(list("aabbbcd"))
    for idx in met.bootstrap_indices(7, n_boot=50, seed=0, groups=groups):
        picked = groups[idx]
        for g in set(picked):
            assert (picked == g).sum() % (groups == g).sum() == 0
    with pytest.raises(ValueError, match="shape"):
        next(met.bootstrap_indices(6, n_boot=1, groups=groups))


def test_calibration_summary_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < p).astype(int)  # perfectly calibrated by construction
    s = cal.calibration_summary(y, p, n_bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="quantile")
    assert s["fraction_positive"] == pytest.approx(frac)
    assert s["mean_predicted"] == pytest.approx(mean)
    assert s["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert sum(s["count"]) == 4000 and len(s["count"]) == len(frac)
    assert np.max(np.abs(frac - mean)) < 0.06  # calibrated: on the diagonal
    # a miscalibrated (over-confident) model is off the diagonal and has a worse Brier
    bad = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    sb = cal.calibration_summary(y, bad, n_bins=10, strategy="uniform")
    assert sb["brier"] > s["brier"]
    assert sb["count"] == [int(c) for c in np.bincount(
        np.searchsorted(np.linspace(0, 1, 11)[1:-1], bad)) if c]


def test_reliability_png_is_an_image() -> None:
    from matplotlib.image import imread

    y, p = _data(200)
    png = cal.reliability_png(y, p, title="t")
    img = imread(io.BytesIO(png), format="png")
    assert img.shape[0] == 500 and img.shape[1] == 400
    assert img[..., :3].std() > 0.05  # something is drawn


def _delong_pairwise(y, a, b):
    """DeLong et al. (1988) from the definition: psi over all positive-negative pairs."""
    def comps(s):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
    A, va10, va01 = comps(a)
    B, vb10, vb01 = comps(b)
    m, n = va10.size, va01.size
    s10 = np.cov(va10, vb10)
    s01 = np.cov(va01, vb01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return A, B, np.sqrt(var)


def test_delong_matches_the_definition_with_ties() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 150)
    a = np.round(y * 0.8 + rng.normal(0, 1, 150), 1)  # rounded: many ties
    b = np.round(y * 0.4 + 0.5 * a + rng.normal(0, 1, 150), 1)
    got = cmp.delong_test(y, a, b)
    A, B, se = _delong_pairwise(y, a, b)
    assert got["auc_a"] == pytest.approx(roc_auc_score(y, a)) == pytest.approx(A)
    assert got["auc_b"] == pytest.approx(B)
    assert got["se"] == pytest.approx(se, rel=1e-10)
    from scipy.stats import norm
    assert got["p_value"] == pytest.approx(2 * norm.sf(abs((A - B) / se)))
    assert got["ci_low"] < got["diff"] < got["ci_high"]


def test_delong_agrees_with_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(9)
    n = 400
    y = rng.integers(0, 2, n)
    shared = rng.normal(0, 1, n)
    a = y * 1.0 + shared + rng.normal(0, 0.6, n)
    b = y * 0.6 + shared + rng.normal(0, 0.6, n)
    d = cmp.delong_test(y, a, b)
    bs = cmp.paired_bootstrap(y, a, b, n_boot=1000, seed=0)
    assert bs["diff"] == pytest.approx(d["diff"])
    # the two intervals of the difference agree to within a few thousandths
    assert bs["ci_low"] == pytest.approx(d["ci_low"], abs=0.015)
    assert bs["ci_high"] == pytest.approx(d["ci_high"], abs=0.015)
    assert d["p_value"] < 0.01 and bs["p_value"] < 0.01
    # the same model twice: no difference
    same = cmp.delong_test(y, a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_compare_aucs_and_errors() -> None:
    y, p = _data(120)
    q = np.clip(p + np.random.default_rng(1).normal(0, 0.2, 120), 0, 1)
    groups = np.repeat(np.arange(40), 3)
    out = cmp.compare_aucs(y, p, q, groups=groups, n_boot=200)
    assert out["n_patients"] == 40 and out["bootstrap"]["resampled"] == "patients"
    assert out["delong"]["auc_a"] == pytest.approx(roc_auc_score(y, p))
    with pytest.raises(ModelError, match="2 samples of each class"):
        cmp.delong_test(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3]), np.array([1, 2, 3]))
    with pytest.raises(ModelError, match="shapes"):
        cmp.delong_test(y, p, q[:-1])
