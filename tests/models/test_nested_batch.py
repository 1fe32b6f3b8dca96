"""The batched selection (medpipe.models.batch) gives what scikit-learn computes fit by fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from medpipe.models import batch
from medpipe.models import estimators as est
from medpipe.models.probability import auc_scorer, proba_block


def _problem(n_patients: int = 30, per: int = 2, seed: int = 4):
    rng = np.random.default_rng(seed)
    y_pat = np.arange(n_patients) % 2
    centre = rng.normal(0, 1, (n_patients, 6)) + y_pat[:, None] * 0.8
    x = np.repeat(centre, per, axis=0) + rng.normal(0, 0.7, (n_patients * per, 6))
    return x, np.repeat(y_pat, per), np.repeat([f"p{i}" for i in range(n_patients)], per)


@pytest.fixture(scope="module")
def outcome():
    x, y, groups = _problem()
    folds = est.grouped_folds(y, groups, n_splits=3, seed=0)
    out = batch.run_selection(["svm", "logreg"], x, y, groups, folds=folds, outer_folds=2,
                              inner_folds=3, seed=0)
    return x, y, groups, folds, out


def test_search_scores_are_scikit_learns(outcome) -> None:
    x, y, _, folds, out = outcome
    for res in out.results[:2]:
        ref = GridSearchCV(est.make_pipeline(res.kind), est.param_grid(res.kind), cv=folds,
                           scoring=auc_scorer, refit=False).fit(x, y).cv_results_
        want = dict(zip(map(str, ref["params"]), ref["mean_test_score"], strict=True))
        got = {str(c["params"]): c["mean_auc"] for c in res.candidates}
        assert got == pytest.approx(want, abs=1e-9)
        assert res.best_score == pytest.approx(float(np.max(ref["mean_test_score"])))


def test_vote_is_the_soft_vote_refitted_on_each_fold(outcome) -> None:
    """The vote reuses its members' fold fits: the same as fitting SoftVote per fold."""
    x, y, _, folds, out = outcome
    vote = out.results[-1]
    assert vote.kind == est.ENSEMBLE and [m.kind for m in vote.members] == ["svm", "logreg"]
    pipe = vote.pipeline(random_state=0)
    oof = np.full(len(y), np.nan)
    for tr, te in folds:
        oof[te] = proba_block(clone(pipe).fit(x[tr], y[tr]), x[te])
    assert vote.oof == pytest.approx(oof, abs=1e-9)
    best = max(out.results, key=lambda r: r.best_score)
    assert out.best is best


def test_final_model_is_the_winner_fitted_on_all_rows(outcome) -> None:
    x, y, _, _, out = outcome
    ref = clone(out.best.pipeline(random_state=0)).fit(x, y)
    got = out.model.predict_proba(x)[:, 1]
    assert got == pytest.approx(ref.predict_proba(x)[:, 1], abs=1e-9)


def test_outer_folds_refit_their_own_winner(outcome) -> None:
    x, y, groups, _, out = outcome
    nres = out.nested
    assert nres.outer_folds == 2 and nres.inner_folds == 3
    outer = est.grouped_folds(y, groups, n_splits=2, seed=0)
    for fold, (tr, te) in zip(nres.folds, outer, strict=True):
        assert np.array_equal(fold.train, tr) and np.array_equal(fold.test, te)
        # the same selection run on the outer-train rows alone picks the same winner
        local = est.grouped_folds(y[tr], groups[tr], n_splits=3, seed=0)
        alone = batch.run_selection(["svm", "logreg"], x[tr], y[tr], groups[tr],
                                    folds=local, seed=0)
        assert alone.best.kind == fold.estimator and alone.best.best_params == fold.best_params
        assert alone.best.best_score == pytest.approx(fold.selection_auc)
        assert nres.oof[te] == pytest.approx(alone.model.predict_proba(x[te])[:, 1], abs=1e-9)
