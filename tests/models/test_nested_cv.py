"""Nested cross-validation: selection never sees the outer test rows; train_model reports it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid

from medpipe.models import batch, nested
from medpipe.models import estimators as est
from medpipe.models import registry as reg
from medpipe.models import search as srch
from medpipe.models.train import train_model

from .conftest import SECRET


def _problem(n_patients: int = 24, per: int = 3, seed: int = 0):
    """Patients with ``per`` correlated images; column 0 is the row number (a spy)."""
    rng = np.random.default_rng(seed)
    y_pat = np.arange(n_patients) % 2
    centre = rng.normal(0, 1, (n_patients, 4)) + y_pat[:, None] * 0.9
    x = np.repeat(centre, per, axis=0) + rng.normal(0, 0.5, (n_patients * per, 4))
    y = np.repeat(y_pat, per)
    groups = np.repeat([f"pt{i}" for i in range(n_patients)], per)
    order = rng.permutation(y.size)
    x, y, groups = x[order], y[order], groups[order]
    rows = np.arange(y.size, dtype=float)[:, None]
    return np.hstack([rows, x]), y, groups


def test_selection_never_sees_outer_test_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, groups = _problem()
    seen: list[tuple[set, set]] = []
    real_fit = batch.fit_predict

    def spy_fit(pipe, xx, yy, train, test):
        # column 0 is the row number: what this fit was trained on and predicted
        seen.append((set(xx[train, 0].astype(int)),
                     set(xx[test, 0].astype(int)) if test is not None else None))
        return real_fit(pipe, xx, yy, train, test)

    monkeypatch.setattr(batch, "fit_predict", spy_fit)
    res = nested.nested_cv(["logreg", "rf"], x, y, groups, outer_folds=3, inner_folds=3,
                           seed=0)
    assert res.outer_folds == 3 and res.inner_folds == 3
    n_cands = sum(len(ParameterGrid(est.param_grid(k))) for k in ("logreg", "rf"))
    refits = {(frozenset(f.train), frozenset(f.test)) for f in res.folds}
    # 3 outer folds x every candidate x 3 inner folds, then each outer fold's refit (the
    # vote refits its members; its fold scores reuse the members' fits)
    n_refit = sum(2 if f.estimator == "ensemble" else 1 for f in res.folds)
    assert len(seen) == 3 * n_cands * 3 + n_refit
    tests = np.concatenate([f.test for f in res.folds])
    assert sorted(tests) == list(range(y.size))  # every row held out exactly once
    inner = {(frozenset(a), frozenset(b)): i for i, f in enumerate(res.folds)
             for a, b in f.inner}
    per_fold = [0, 0, 0]
    for train, test in seen:
        if (frozenset(train), frozenset(test)) in refits:
            continue  # an outer refit: trained on outer-train, predicts outer-test
        # every other fit is one of an outer fold's inner folds: inside its outer-train
        i = inner[frozenset(train), frozenset(test)]
        per_fold[i] += 1
        assert not (train | test) & set(res.folds[i].test)
    assert per_fold == [n_cands * 3] * 3
    for fold in res.folds:
        assert not set(groups[fold.train]) & set(groups[fold.test])  # patient-grouped
        for itr, ite in fold.inner:
            assert set(itr) | set(ite) == set(fold.train)
            assert not set(groups[itr]) & set(groups[ite])


def test_outer_scores_are_refits_scored_on_unseen_rows() -> None:
    x, y, groups = _problem(seed=1)
    x = x[:, 1:]
    res = nested.nested_cv(["logreg"], x, y, groups, outer_folds=3, inner_folds=3, seed=0)
    assert np.isfinite(res.oof).all()
    for fold in res.folds:
        # an independent refit of the fold's winner on its outer-train rows
        best, _ = nested.select(["logreg"], x[fold.train], y[fold.train], groups[fold.train],
                                folds=[(np.searchsorted(fold.train, a),
                                        np.searchsorted(fold.train, b)) for a, b in fold.inner],
                                random_state=0)
        assert best.best_params == fold.best_params
        model = clone(best.pipeline(random_state=0)).fit(x[fold.train], y[fold.train])
        prob = model.predict_proba(x[fold.test])[:, 1]
        assert res.oof[fold.test] == pytest.approx(prob, abs=1e-6)
        assert fold.auc == pytest.approx(roc_auc_score(y[fold.test], prob))
    assert res.mean_auc == pytest.approx(np.mean([f.auc for f in res.folds]))


def test_selection_score_is_optimistic_on_noise() -> None:
    """Pure-noise features: the winner's selection score is a maximum over candidates
    scored on the folds they were chosen on, so it flatters; the outer estimate does not."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(72, 30))
    groups = np.repeat([f"n{i}" for i in range(24)], 3)
    y = np.repeat(np.arange(24) % 2, 3)
    folds = srch.grouped_folds(y, groups, n_splits=3, seed=0)
    best, results = nested.select(["logreg", "rf"], x, y, groups, folds=folds)
    res = nested.nested_cv(["logreg", "rf"], x, y, groups, outer_folds=3, inner_folds=3)
    # every candidate's mean is <= the winner's: the winner's score is a maximum
    assert best.best_score >= max(c["mean_auc"] for r in results for c in r.candidates)
    assert np.mean([f.selection_auc for f in res.folds]) > res.mean_auc
    assert abs(res.mean_auc - 0.5) < 0.25


def test_train_model_reports_nested_cv(grouped_store: dict) -> None:
    store, archive = grouped_store["store"], grouped_store["archive"]
    out = train_model(store, name="nested", features=grouped_store["features"],
                      labels=archive / "labels.csv", secret=SECRET, estimator="logreg",
                      n_splits=3, n_boot=50, outer_folds=3)
    meta = reg.read_model_json(store, "nested", out["version"])
    cv = meta["cv"]
    assert cv["method"] == "nested" and cv["outer_folds"] == 3 and cv["inner_folds"] == 3
    assert out["cv_method"] == "nested"
    assert out["cv_auc"] == pytest.approx(np.mean([f["auc"] for f in cv["outer"]]))
    assert cv["auc"]["value"] == out["cv_auc"]
    assert meta["selection_auc"] == out["selection_auc"] == meta["search"]["logreg"]["best_auc"]
    assert meta["metrics"]["cv"]["support"]["bootstrap"] == "patient (cluster)"
    assert meta["metrics"]["cv"]["support"]["n_patients"] == 16
    assert 0 <= meta["metrics"]["cv"]["brier"]["value"] <= 1
    assert meta["calibration"]["cv"]["brier"] == pytest.approx(
        meta["metrics"]["cv"]["brier"]["value"])
    png = reg.read_model_file(store, "nested", out["version"], "calibration_cv.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    flat = train_model(store, name="flat", features=grouped_store["features"],
                       labels=archive / "labels.csv", secret=SECRET, estimator="logreg",
                       n_splits=3, n_boot=50, outer_folds=0)
    fmeta = reg.read_model_json(store, "flat", flat["version"])
    assert fmeta["cv"]["method"] == "selection" and flat["cv_auc"] == flat["selection_auc"]
