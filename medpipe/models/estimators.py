"""Estimators, grouped cross-validation and the parallel hyperparameter search.

Every model is a scikit-learn :class:`~sklearn.pipeline.Pipeline`
``VarianceThreshold → dask_ml StandardScaler → classifier`` (the incremental SVM drops
the first step, so that its data stay Dask arrays):

* ``svm``: :class:`~sklearn.svm.LinearSVC` (probabilities by sigmoid calibration,
  :class:`~sklearn.calibration.CalibratedClassifierCV`) for data that fit in memory; for
  larger data ``dask_ml.wrappers.Incremental(SGDClassifier(loss="hinge"))`` trained
  block by block;
* ``logreg``: :class:`dask_ml.linear_model.LogisticRegression`;
* ``rf``: scikit-learn's :class:`~sklearn.ensemble.RandomForestClassifier`, refitted
  under the joblib Dask backend;
* ``ensemble`` (only with ``--estimator all``): :class:`SoftVote`, the mean probability of
  the three tuned pipelines, kept when its cross-validated AUC beats each of them.

The search is :class:`dask_ml.model_selection.GridSearchCV` (candidates × folds run
as tasks on the current Dask scheduler) with patient-grouped stratified folds, scored
by ROC AUC.  The fitted pipeline is wrapped in :class:`dask_ml.wrappers.ParallelPostFit`
so that scoring a Dask array runs block-wise on the cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask_ml.linear_model import LogisticRegression
from dask_ml.model_selection import GridSearchCV
from dask_ml.preprocessing import StandardScaler as _DaskStandardScaler
from dask_ml.wrappers import Incremental, ParallelPostFit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import VarianceThreshold
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from medpipe.errors import ConfigError, ModelError

__all__ = [
    "ESTIMATORS",
    "ENSEMBLE",
    "LARGE_SAMPLES",
    "SearchResult",
    "SoftVote",
    "ensemble_result",
    "make_pipeline",
    "param_grid",
    "grouped_folds",
    "auc_scorer",
    "positive_proba",
    "search",
    "fit_final",
    "out_of_fold",
]

class StandardScaler(_DaskStandardScaler):
    """dask-ml's :class:`~dask_ml.preprocessing.StandardScaler`, NumPy input kept in NumPy.

    dask-ml 2025.1's scaler computes the statistics of a NumPy array through a Dask
    graph — a nested compute on the cluster when it runs inside a search task (seconds
    per fit, serialising a grid search) — and scales NumPy input *in place*.  Here NumPy
    input is fitted with NumPy (same attributes and values) and transformed on a copy;
    Dask arrays and data frames go to dask-ml unchanged.
    """

    def fit(self, X: Any, y: Any = None) -> StandardScaler:  # noqa: N803 - sklearn API
        if not isinstance(X, np.ndarray):
            return super().fit(X, y)
        self._reset()
        x = np.asarray(X, dtype=np.float64)
        if self.with_mean:
            self.mean_ = np.nanmean(x, axis=0)
        if self.with_std:
            var = np.nanvar(x, axis=0)
            scale = var.copy()
            scale[scale == 0] = 1
            self.var_ = var
            self.scale_ = np.sqrt(scale)
        self.n_samples_seen_ = x.shape[0]
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X: Any, y: Any = None, copy: bool | None = None) -> Any:  # noqa: N803
        if isinstance(X, np.ndarray):
            X = X.astype(np.float64, copy=True)  # noqa: N806
        return super().transform(X, y, copy)


#: Estimator kinds; ``all`` in the CLI means each of them (and their soft vote), best by
#: CV AUC.
ESTIMATORS = ("svm", "logreg", "rf")

#: Kind name of the soft vote of the tuned estimators.
ENSEMBLE = "ensemble"


class SoftVote(ClassifierMixin, BaseEstimator):
    """Mean class-1 probability of several binary pipelines (soft voting).

    scikit-learn's :class:`~sklearn.ensemble.VotingClassifier` refuses dask-ml's
    logistic regression (it carries no classifier tag); this is the same average.

    Parameters
    ----------
    estimators
        ``(name, pipeline)`` pairs; each is cloned and fitted on the same data.
    """

    def __init__(self, estimators: list[tuple[str, Any]]) -> None:
        self.estimators = estimators

    def fit(self, X: Any, y: Any) -> SoftVote:  # noqa: N803 - sklearn API
        self.estimators_ = [_fit(clone(p), X, y) for _, p in self.estimators]
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        p1 = np.mean([_proba_block(e, X) for e in self.estimators_], axis=0)
        return np.column_stack([1 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


#: From this many training samples the SVM is trained incrementally (SGD, hinge loss).
LARGE_SAMPLES = 200_000


def make_pipeline(kind: str, *, large: bool = False, random_state: int = 0) -> Pipeline:
    """The unfitted pipeline of one estimator kind (default hyperparameters).

    Parameters
    ----------
    kind
        ``svm``, ``logreg`` or ``rf``.
    large
        For ``svm``: the incremental SGD path for data larger than memory.
    random_state
        Seed of the stochastic parts.
    """
    if kind == "svm" and large:
        clf: Any = Incremental(
            SGDClassifier(loss="hinge", alpha=1e-4, random_state=random_state),
            scoring=None,
            shuffle_blocks=True,
            random_state=random_state,
        )
    elif kind == "svm":
        clf = CalibratedClassifierCV(
            LinearSVC(C=0.01, max_iter=20_000, random_state=random_state),
            cv=3,
            method="sigmoid",
        )
    elif kind == "logreg":
        clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=300)
    elif kind == "rf":
        clf = RandomForestClassifier(
            n_estimators=300, n_jobs=1, random_state=random_state, class_weight=None
        )
    else:
        raise ConfigError(f"unknown estimator {kind!r}; use one of {list(ESTIMATORS)} or all")
    if kind == "svm" and large:  # stays a Dask array end to end (no in-memory step)
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])
    return Pipeline(
        [("variance", VarianceThreshold()), ("scale", StandardScaler()), ("clf", clf)]
    )


def param_grid(kind: str, *, large: bool = False) -> dict[str, list]:
    """The hyperparameter grid searched for ``kind`` (empty for the incremental SVM)."""
    if kind == "svm":
        return {} if large else {"clf__estimator__C": [1e-4, 1e-3, 1e-2, 1e-1]}
    if kind == "logreg":
        return {"clf__C": [1e-3, 1e-2, 1e-1, 1.0]}
    if kind == "rf":
        return {"clf__max_features": ["sqrt", 0.1], "clf__min_samples_leaf": [1, 3]}
    raise ConfigError(f"unknown estimator {kind!r}; use one of {list(ESTIMATORS)} or all")


def grouped_folds(
    y: np.ndarray, groups: np.ndarray, *, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds in which no group (patient) is on both sides.

    Parameters
    ----------
    y
        Labels (stratification).
    groups
        Patient key per sample.
    n_splits
        Folds; reduced to the number of patients (or of the rarer class's patients)
        when there are fewer.
    seed
        Shuffling seed.

    Returns
    -------
    list of (train_index, test_index)
    """
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    per_class = [len(np.unique(groups[y == c])) for c in (0, 1)]
    k = min(n_splits, *per_class)
    if k < 2:
        raise ModelError(
            "grouped cross-validation needs at least 2 patients of each class; "
            f"have {per_class[0]} negative and {per_class[1]} positive"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]


def _final_step(model: Any) -> Any:
    est = model.estimator if isinstance(model, ParallelPostFit) and not isinstance(
        model, Incremental
    ) else model
    return est


def _proba_block(est: Any, x: np.ndarray) -> np.ndarray:
    """P(class 1) of an in-memory block (NaN for rows with a non-finite feature).

    Hinge-loss models (the incremental SVM) have no probabilities: their score is the
    logistic function of the margin, which ranks samples the same way.
    """
    # a copy: dask-ml's StandardScaler.transform scales NumPy input *in place*
    x = np.array(x, dtype=np.float64, copy=True)
    out = np.full(x.shape[0], np.nan)
    ok = np.isfinite(x).all(axis=1)
    if not ok.any():
        return out
    x = x[ok]
    clf = est[-1] if isinstance(est, Pipeline) else est
    base = getattr(clf, "estimator_", None) if isinstance(clf, Incremental) else clf
    if isinstance(base, SGDClassifier) and base.loss == "hinge":
        xt = est[:-1].transform(x) if isinstance(est, Pipeline) else x
        margin = np.asarray(base.decision_function(xt), dtype=float)
        out[ok] = 1.0 / (1.0 + np.exp(-np.clip(margin, -500, 500)))
        return out
    proba = np.asarray(est.predict_proba(x), dtype=float)
    classes = list(getattr(clf, "classes_", [0, 1]))
    out[ok] = proba[:, classes.index(1)] if 1 in classes else proba[:, -1]
    return out


def positive_proba(model: Any, x: np.ndarray | da.Array) -> np.ndarray | da.Array:
    """Probability of class 1 for each row of ``x``.

    A Dask array gives a lazy Dask array computed block by block (what
    :class:`~dask_ml.wrappers.ParallelPostFit` does), so scoring runs on the cluster.
    """
    est = _final_step(model)
    if isinstance(x, da.Array):
        x = x.rechunk({1: -1})
        return x.map_blocks(
            lambda b: _proba_block(est, b), drop_axis=1, dtype=np.float64, meta=np.array([])
        )
    return _proba_block(est, np.asarray(x))


def auc_scorer(estimator: Any, x: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC scorer (sklearn scorer signature) for any of the pipelines.

    dask-ml's estimators do not carry scikit-learn's classifier tags, so the stock
    ``"roc_auc"`` scorer would pass them the two-column probabilities.
    """
    return float(roc_auc_score(np.asarray(y).astype(int), _proba_block(estimator, x)))


@dataclass
class SearchResult:
    """Outcome of :func:`search` for one estimator kind (or of :func:`ensemble_result`)."""

    kind: str
    best_params: dict[str, Any]
    best_score: float
    candidates: list[dict[str, Any]] = field(default_factory=list)
    large: bool = False
    members: list[SearchResult] = field(default_factory=list)
    #: out-of-fold P(class 1) on the search's folds, where already computed
    oof: np.ndarray | None = None

    def pipeline(self, *, random_state: int = 0) -> Any:
        """The unfitted pipeline with the best parameters."""
        if self.kind == ENSEMBLE:
            return SoftVote([(m.kind, m.pipeline(random_state=random_state))
                             for m in self.members])
        pipe = make_pipeline(self.kind, large=self.large, random_state=random_state)
        return pipe.set_params(**self.best_params)


def ensemble_result(
    results: Sequence[SearchResult],
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    random_state: int = 0,
) -> SearchResult:
    """Score the soft vote of the tuned pipelines on the same folds as their search.

    Its ``best_score`` is the mean fold AUC, as :func:`search` reports for each member.
    Hinge-loss (incremental) SVMs have no probabilities and are left out.
    """
    members = [r for r in results if not r.large and r.kind != ENSEMBLE]
    if len(members) < 2:
        raise ModelError("a soft vote needs at least two tuned estimators with probabilities")
    res = SearchResult(ENSEMBLE, {m.kind: m.best_params for m in members}, float("nan"),
                       members=list(members))
    return _scored(res, res.pipeline(random_state=random_state), x, y, folds)


def _scored(res: SearchResult, pipe: Any, x: np.ndarray, y: np.ndarray,
            folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> SearchResult:
    """``res`` as its single candidate ``pipe``: out-of-fold probabilities and fold AUCs."""
    res.oof = out_of_fold(pipe, x, y, folds=folds)
    scores = [float(roc_auc_score(y[te], res.oof[te])) for _, te in folds]
    res.best_score = float(np.mean(scores))
    res.candidates = [{"params": res.best_params, "mean_auc": res.best_score,
                       "std_auc": float(np.std(scores))}]
    return res


def search(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    random_state: int = 0,
    large: bool | None = None,
) -> SearchResult:
    """Grid search of one estimator kind with ``dask_ml.model_selection.GridSearchCV``.

    Runs on the current Dask scheduler (the distributed client when there is one).
    Only the data passed in are used: give the training rows only.

    Returns
    -------
    SearchResult
        Best parameters by mean fold AUC and every candidate's mean and std.
    """
    large = len(y) >= LARGE_SAMPLES if large is None else large
    pipe = make_pipeline(kind, large=large, random_state=random_state)
    grid = param_grid(kind, large=large)
    if not grid:  # incremental SVM: one candidate, scored on the same folds
        return _scored(SearchResult(kind, {}, float("nan"), large=True), pipe, x, y, folds)
    gs = GridSearchCV(pipe, grid, cv=list(folds), scoring=auc_scorer, refit=False,
                      error_score="raise")
    with _data_in_graph(x, y):
        gs.fit(x, y, groups=groups)
    res = gs.cv_results_
    candidates = [
        {"params": _plain(p), "mean_auc": float(m), "std_auc": float(s)}
        for p, m, s in zip(res["params"], res["mean_test_score"], res["std_test_score"],
                           strict=True)
    ]
    best = int(np.nanargmax(res["mean_test_score"]))
    return SearchResult(kind, candidates[best]["params"], candidates[best]["mean_auc"],
                        candidates, large)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def _fit(pipe: Any, x: Any, y: Any) -> Any:
    if isinstance(pipe, Pipeline) and isinstance(pipe[-1], Incremental):
        xd = x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=(10_000, -1))
        yd = y if isinstance(y, da.Array) else da.from_array(np.asarray(y), chunks=xd.chunks[0])
        return pipe.fit(xd, yd, clf__classes=[0, 1])
    return pipe.fit(x, y)


def _fit_score(pipe: Pipeline, x: np.ndarray, y: np.ndarray, tr: np.ndarray,
               te: np.ndarray) -> np.ndarray:
    fitted = _fit(clone(pipe), x[tr], y[tr])
    return _proba_block(fitted, x[te])


def out_of_fold(
    pipe: Pipeline, x: np.ndarray, y: np.ndarray, *, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold P(class 1): each fold predicted by a clone fitted on the other folds.

    The fold fits run in parallel as tasks on the current Dask scheduler.
    """
    # one graph key per array, shared by the fold tasks (not a copy in each task)
    xd, yd = dask.delayed(x, pure=True), dask.delayed(y, pure=True)
    with dask.config.set({"scheduler": _scheduler()}), _data_in_graph(x, y):
        parts = dask.compute(
            *[dask.delayed(_fit_score, pure=False)(pipe, xd, yd, tr, te) for tr, te in folds]
        )
    oof = np.full(len(y), np.nan)
    for (_, te), p in zip(folds, parts, strict=True):
        oof[te] = p
    return oof


@contextlib.contextmanager
def _data_in_graph(*arrays: np.ndarray) -> Iterator[None]:
    """The training matrix travels in the task graph, once: no "large graph" warning.

    It is samples x features (tens of MB at most, see :data:`LARGE_SAMPLES`); larger
    data take the incremental path, which reads Dask arrays.
    """
    size = sum(a.nbytes for a in arrays) + 2**24
    key = "distributed.admin.large-graph-warning-threshold"
    limit = max(size, dask.utils.parse_bytes(dask.config.get(key, "10MB")))
    with dask.config.set({key: f"{limit}B"}):
        yield


def _scheduler() -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return "threads"


@contextlib.contextmanager
def _joblib_dask() -> Iterator[bool]:
    """joblib's Dask backend when a distributed client is current, else a no-op.

    Not from inside a worker task: joblib's backend cannot run from a seceded worker
    thread (the caller should hold a client of its own, as the train flow does).
    """
    try:
        from distributed import get_client, get_worker

        try:
            get_worker()
            yield False
            return
        except ValueError:
            pass
        get_client()
    except (ImportError, ValueError):
        yield False
        return
    import joblib

    with joblib.parallel_backend("dask"):
        yield True


def fit_final(result: SearchResult, x: np.ndarray, y: np.ndarray, *,
              random_state: int = 0) -> ParallelPostFit:
    """Refit the best pipeline on all the training rows; wrap it in ``ParallelPostFit``.

    The random forest's trees are fitted with ``n_jobs=-1`` under the joblib Dask
    backend, so they spread over the cluster's workers.
    """
    pipe = result.pipeline(random_state=random_state)
    _forest_jobs(pipe, -1)
    with _joblib_dask():
        fitted = _fit(pipe, x, y)
    _forest_jobs(fitted, 1)  # scoring is parallel block-wise already
    return ParallelPostFit(estimator=fitted)


def _forest_jobs(model: Any, n_jobs: int) -> None:
    """Set ``n_jobs`` of the random forests in a pipeline or soft vote."""
    pipes = [model]
    if isinstance(model, SoftVote):
        pipes = getattr(model, "estimators_", [p for _, p in model.estimators])
    for p in pipes:
        if isinstance(p, Pipeline) and isinstance(p[-1], RandomForestClassifier):
            p.set_params(clf__n_jobs=n_jobs)
