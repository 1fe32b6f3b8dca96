"""The estimator registry: a kind registered from a test is searched like the built-ins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.naive_bayes import GaussianNB

from medpipe.errors import ConfigError
from medpipe.models import estimators as est


def _gnb(*, large: bool, random_state: int) -> GaussianNB:
    return GaussianNB()


def _gnb_grid(*, large: bool) -> dict[str, list]:
    return {"clf__var_smoothing": [1e-9, 1e-3, 1.0]}


@pytest.fixture
def toy_kind():
    """A Gaussian naive Bayes kind, registered here only (no library edit)."""
    spec = est.register_estimator(est.Estimator("toy_nb", _gnb, _gnb_grid))
    yield spec
    est.unregister_estimator(spec.name)


def test_registered_kind_is_searched_like_sklearn(toy_kind: est.Estimator) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    y = (x[:, 1] + 0.7 * rng.normal(size=90) > 0).astype(int)
    groups = np.arange(90) // 3
    assert "toy_nb" in est.estimator_names()
    folds = est.grouped_folds(y, groups, n_splits=3)
    got = est.search("toy_nb", x, y, groups, folds=folds)
    ref = SkGridSearchCV(est.make_pipeline("toy_nb"), _gnb_grid(large=False), cv=folds,
                         scoring=est.auc_scorer).fit(x, y)
    mine = {json.dumps(c["params"], sort_keys=True): c["mean_auc"] for c in got.candidates}
    for params, score in zip(ref.cv_results_["params"], ref.cv_results_["mean_test_score"],
                             strict=True):
        assert mine[json.dumps(params, sort_keys=True)] == pytest.approx(score, abs=1e-12)
    assert got.best_params == ref.best_params_


def test_unknown_and_taken_names() -> None:
    with pytest.raises(ConfigError, match="svm"):
        est.make_pipeline("no_such_kind")
    with pytest.raises(ConfigError, match="taken"):
        est.register_estimator(est.Estimator("svm", _gnb, _gnb_grid))
    with pytest.raises(ConfigError, match="taken"):
        est.register_estimator(est.Estimator("all", _gnb, _gnb_grid))
    assert est.ESTIMATORS == ("svm", "logreg", "rf", "cnn")
