"""Grouped cross-validation, the hyperparameter search and the final fit.

Folds are patient-grouped and stratified (:func:`grouped_folds`); candidates are scored
by their mean fold ROC AUC (macro one-vs-rest for k classes, :func:`fold_auc`).  The
fits themselves run as tasks on the current Dask scheduler through
:mod:`medpipe.models.batch` (what ``train`` runs as one batch): :func:`search`,
:func:`out_of_fold`, :func:`ensemble_result` and :func:`fit_final` are its pieces for
one kind, one pipeline, the soft vote and the refit.  The refitted pipeline is wrapped in
:class:`dask_ml.wrappers.ParallelPostFit` so that scoring a Dask array runs block-wise on
the cluster.  The pipelines themselves are in :mod:`medpipe.models.estimators` (which
re-exports every public name of this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dask_ml.wrappers import ParallelPostFit
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from medpipe.errors import ModelError
from medpipe.models.estimators import (
    ENSEMBLE,
    SoftVote,
    get_estimator,
    make_pipeline,
)
from medpipe.models.multiclass import ovr_aucs

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

    Its ``best_score`` is the mean fold AUC, as :func:`search` reports for each member;
    its out-of-fold probabilities are the mean of the members' (computed here for a
    member that lacks them).  Hinge-loss (incremental) SVMs have no probabilities and are
    left out, as are kinds registered with ``vote=False`` (the CNN).
    """
    from medpipe.models import batch

    for r in results:
        if r.oof is None and not r.large and r.kind != ENSEMBLE and get_estimator(r.kind).vote:
            r.oof = out_of_fold(r.pipeline(random_state=random_state), x, y, folds=folds)
    return batch.vote_result(results, y, folds)


def fold_auc(y: np.ndarray, prob: np.ndarray) -> float:
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
    """Grid search of one estimator kind: every (candidate, fold) fit one task.

    The selection of :func:`medpipe.models.batch.run_selection` for one kind, on the
    current Dask scheduler (the distributed client when there is one, else threads).
    Only the data passed in are used: give the training rows only.

    Returns
    -------
    SearchResult
        Best parameters by mean fold AUC, every candidate's mean and std, and the best
        candidate's out-of-fold probabilities (``oof``).
    """
    from medpipe.models import batch

    return batch.run_selection([kind], x, y, groups, folds=folds, seed=random_state,
                               large=large, vote=False, refit=False).best


def plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """Grid parameters with NumPy scalars made plain Python values (JSON-able)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def out_of_fold(
    pipe: Pipeline, x: np.ndarray, y: np.ndarray, *, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Out-of-fold P(class 1) (the ``(n, k)`` class matrix for k > 2 classes): each fold
    predicted by a clone fitted on the other folds.

    The fold fits run in parallel as tasks on the current Dask scheduler
    (:func:`medpipe.models.batch.fold_probabilities`).
    """
    from medpipe.models import batch

    return batch.fold_probabilities(pipe, x, y, list(folds))


def fit_final(result: SearchResult, x: np.ndarray, y: np.ndarray, *,
              random_state: int = 0) -> ParallelPostFit:
    """Refit the best pipeline on all the training rows; wrap it in ``ParallelPostFit``.

    One task on the current Dask scheduler per fitted pipeline (a vote: each member).
    """
    from medpipe.models import batch

    return batch.refit(result, x, y, seed=random_state)
