"""Grouped cross-validation, the parallel hyperparameter search and the final fit.

The search is :class:`dask_ml.model_selection.GridSearchCV` (candidates × folds run
as tasks on the current Dask scheduler) with patient-grouped stratified folds, scored
by ROC AUC (:func:`~medpipe.models.estimators.auc_scorer`).  Out-of-fold probabilities
run the fold fits as parallel tasks.  The refitted pipeline is wrapped in
:class:`dask_ml.wrappers.ParallelPostFit` so that scoring a Dask array runs block-wise on
the cluster.  The pipelines themselves are in :mod:`medpipe.models.estimators` (which
re-exports every public name of this module).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
from dask_ml.model_selection import GridSearchCV
from dask_ml.wrappers import ParallelPostFit
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from medpipe.errors import ModelError
from medpipe.models.estimators import (
    ENSEMBLE,
    LARGE_SAMPLES,
    SoftVote,
    get_estimator,
    make_pipeline,
    param_grid,
)
from medpipe.models.multiclass import ovr_aucs
from medpipe.models.probability import auc_scorer, proba_block
from medpipe.models.probability import fit_pipeline as _fit

__all__ = [
    "SearchResult",
    "ensemble_result",
    "grouped_folds",
    "search",
    "fit_final",
    "out_of_fold",
]


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
    codes = sorted({0, 1} | set(np.unique(y).tolist()))  # k classes: every code 0 .. k-1
    per_class = [len(np.unique(groups[y == c])) for c in codes]
    k = min(n_splits, *per_class)
    if k < 2 and len(codes) > 2:
        raise ModelError(
            "grouped cross-validation needs at least 2 patients of each class; have "
            + ", ".join(f"{n} of class code {c}" for c, n in zip(codes, per_class, strict=True))
        )
    if k < 2:
        raise ModelError(
            "grouped cross-validation needs at least 2 patients of each class; "
            f"have {per_class[0]} negative and {per_class[1]} positive"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]


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
    Hinge-loss (incremental) SVMs have no probabilities and are left out, as are kinds
    registered with ``vote=False`` (the CNN).
    """
    members = [r for r in results if not r.large and r.kind != ENSEMBLE
               and get_estimator(r.kind).vote]
    if len(members) < 2:
        raise ModelError("a soft vote needs at least two tuned estimators with probabilities")
    res = SearchResult(ENSEMBLE, {m.kind: m.best_params for m in members}, float("nan"),
                       members=list(members))
    return _scored(res, res.pipeline(random_state=random_state), x, y, folds)


def _scored(res: SearchResult, pipe: Any, x: np.ndarray, y: np.ndarray,
            folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> SearchResult:
    """``res`` as its single candidate ``pipe``: out-of-fold probabilities and fold AUCs."""
    res.oof = out_of_fold(pipe, x, y, folds=folds)
    scores = [_fold_auc(y[te], res.oof[te]) for _, te in folds]
    res.best_score = float(np.mean(scores))
    res.candidates = [{"params": res.best_params, "mean_auc": res.best_score,
                       "std_auc": float(np.std(scores))}]
    return res


def _fold_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC of a fold: binary, or macro one-vs-rest for a k-class matrix."""
    if prob.ndim == 2:
        return float(np.mean(ovr_aucs(np.asarray(y).astype(int), prob)))
    return float(roc_auc_score(y, prob))


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


def _fit_score(pipe: Pipeline, x: np.ndarray, y: np.ndarray, tr: np.ndarray,
               te: np.ndarray) -> np.ndarray:
    fitted = _fit(clone(pipe), x[tr], y[tr])
    return proba_block(fitted, x[te])


def out_of_fold(
    pipe: Pipeline, x: np.ndarray, y: np.ndarray, *, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold P(class 1) (the ``(n, k)`` class matrix for k > 2 classes): each fold
    predicted by a clone fitted on the other folds.

    The fold fits run in parallel as tasks on the current Dask scheduler.
    """
    # one graph key per array, shared by the fold tasks (not a copy in each task)
    xd, yd = dask.delayed(x, pure=True), dask.delayed(y, pure=True)
    with dask.config.set({"scheduler": _scheduler()}), _data_in_graph(x, y):
        parts = dask.compute(
            *[dask.delayed(_fit_score, pure=False)(pipe, xd, yd, tr, te) for tr, te in folds]
        )
    oof = np.full((len(y), *np.shape(parts[0])[1:]), np.nan)  # (n, k) for k classes
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
