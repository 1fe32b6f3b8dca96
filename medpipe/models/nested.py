"""Model selection, and nested cross-validation: a CV estimate that selection never saw.

:func:`select` is the whole selection rule of ``train``: each estimator kind's grid
search on patient-grouped folds, the soft vote of the tuned pipelines on the same
folds, and the best mean fold AUC wins.  That winner's score is *optimistic* — it is
the maximum over many candidates scored on the folds they were chosen on.

:func:`nested_cv` repeats the whole rule inside an outer patient-grouped split: in
each outer fold, :func:`select` runs on the outer-train rows only (its inner folds
split those rows), the winner is refitted on the outer-train rows and scored on the
outer-test rows, which selection never saw.  The mean outer AUC is the honest
estimate of what the selection procedure delivers.  The grid searches and the outer
refits run on the current Dask scheduler (the cluster, in the train flow); the outer
folds run one after the other, each using the whole cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medpipe.models import search as srch
from medpipe.models.estimators import ENSEMBLE, LARGE_SAMPLES
from medpipe.models.metrics import auc_score

__all__ = ["OuterFold", "NestedResult", "select", "nested_cv"]

log = logging.getLogger(__name__)


def select(
    kinds: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    random_state: int = 0,
    large: bool | None = None,
    vote: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> tuple[srch.SearchResult, list[srch.SearchResult]]:
    """Grid-search each kind on ``folds``, add the soft vote, pick the best mean fold AUC.

    Parameters
    ----------
    kinds
        Estimator kinds to search (``svm``, ``logreg``, ``rf``).
    x, y, groups
        The rows selection may see (features, class codes, patient keys).
    folds
        Patient-grouped folds of those rows (:func:`~medpipe.models.search.grouped_folds`).
    random_state
        Seed of the estimators.
    large
        Force (or forbid) the incremental SVM.
    vote
        Also score the soft vote of the tuned estimators (when two or more have
        probabilities).
    on_step
        Called with the kind after each search (and with ``vote`` after the vote):
        progress reporting.

    Returns
    -------
    (best, results)
        The winner and every kind's :class:`~medpipe.models.search.SearchResult`.
    """
    results = []
    for k in kinds:
        log.info("grid search %s on %d samples x %d features", k, *x.shape)
        results.append(srch.search(k, x, y, groups, folds=folds, random_state=random_state,
                                   large=large))
        if on_step is not None:
            on_step(k)
    if vote and sum(not r.large and r.kind != ENSEMBLE for r in results) >= 2:
        log.info("soft vote of %s on the same folds", ", ".join(r.kind for r in results))
        results.append(srch.ensemble_result(results, x, y, folds=folds,
                                            random_state=random_state))
        if on_step is not None:
            on_step(ENSEMBLE)
    best = max(results, key=lambda r: r.best_score)
    return best, results


@dataclass
class OuterFold:
    """One outer fold of :func:`nested_cv` (indices into the rows given to it)."""

    train: np.ndarray
    test: np.ndarray
    #: the inner folds selection ran on, as indices into the same rows (all in ``train``)
    inner: list[tuple[np.ndarray, np.ndarray]]
    estimator: str
    best_params: dict[str, Any]
    #: the winner's mean inner-fold AUC (optimistic, as any selection score)
    selection_auc: float
    #: the winner, refitted on ``train``, scored on ``test``
    auc: float

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (no indices)."""
        return {"estimator": self.estimator, "best_params": self.best_params,
                "selection_auc": self.selection_auc, "auc": self.auc,
                "n_train": int(self.train.size), "n_test": int(self.test.size),
                "inner_folds": len(self.inner)}


@dataclass
class NestedResult:
    """Outcome of :func:`nested_cv`."""

    folds: list[OuterFold]
    #: P(class 1) of every row from the outer fold that held it out (for k > 2 classes
    #: the ``(n, k)`` class matrix)
    oof: np.ndarray
    inner_folds: int
    seed: int
    kinds: list[str] = field(default_factory=list)

    @property
    def outer_folds(self) -> int:
        """Number of outer folds."""
        return len(self.folds)

    @property
    def scores(self) -> list[float]:
        """Outer-test AUC per outer fold."""
        return [f.auc for f in self.folds]

    @property
    def mean_auc(self) -> float:
        """Mean outer-test AUC: the nested-CV estimate."""
        return float(np.nanmean(self.scores))


def nested_cv(
    kinds: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    outer_folds: int = 3,
    inner_folds: int = 5,
    seed: int = 0,
    large: bool | None = None,
    vote: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> NestedResult:
    """Nested patient-grouped cross-validation of the whole selection rule.

    Parameters
    ----------
    kinds, large, vote
        As :func:`select` (``large`` is decided once, on all the rows).
    x, y, groups
        The training rows (features, class codes, patient keys).
    outer_folds
        Outer patient-grouped stratified folds.
    inner_folds
        Folds of the selection inside each outer-train part.
    seed
        Seed of the folds (outer and inner) and of the estimators.
    on_step
        Called after each search of each outer fold (as in :func:`select`) and with
        ``"outer refit"`` after each outer fold's refit: progress reporting.

    Returns
    -------
    NestedResult
        Per outer fold: its rows, the inner folds selection ran on, the winner, its
        selection score and its outer-test AUC; the outer out-of-fold probabilities.
    """
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    large = len(y) >= LARGE_SAMPLES if large is None else large
    outer = srch.grouped_folds(y, groups, n_splits=outer_folds, seed=seed)
    k = int(y.max()) + 1 if y.size else 2
    oof = np.full((len(y), k) if k > 2 else len(y), np.nan)  # (n, k) for k classes
    done: list[OuterFold] = []
    m = inner_folds
    for i, (tr, te) in enumerate(outer, 1):
        log.info("nested CV: outer fold %d/%d (%d train, %d test rows)", i, len(outer),
                 tr.size, te.size)
        inner_local = srch.grouped_folds(y[tr], groups[tr], n_splits=inner_folds, seed=seed)
        m = len(inner_local)
        best, _ = select(kinds, x[tr], y[tr], groups[tr], folds=inner_local,
                         random_state=seed, large=large, vote=vote, on_step=on_step)
        # refit on the outer-train rows and predict the outer-test rows: one task
        prob = srch.out_of_fold(best.pipeline(random_state=seed), x, y, folds=[(tr, te)])[te]
        if on_step is not None:
            on_step("outer refit")
        oof[te] = prob
        auc = auc_score(y[te], prob)  # k classes: macro one-vs-rest (NaN: a class absent)
        done.append(OuterFold(tr, te, [(tr[a], tr[b]) for a, b in inner_local], best.kind,
                              best.best_params, float(best.best_score), auc))
        log.info("nested CV: outer fold %d winner %s, selection AUC %.3f, outer AUC %.3f",
                 i, best.kind, best.best_score, auc)
    return NestedResult(done, oof, m, seed, list(kinds))
