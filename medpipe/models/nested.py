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
refits run on the current Dask scheduler (the cluster, in the train flow) as the two
batches of :mod:`medpipe.models.batch`: every fit of every outer fold's selection in one,
the outer refits in the other (``train`` adds its own selection and refit to them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from medpipe.models import search as srch
from medpipe.models.batch import NestedResult, OuterFold, run_selection

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
        Called with the kind after each search (and with ``ensemble`` after the vote):
        progress reporting.

    Returns
    -------
    (best, results)
        The winner and every kind's :class:`~medpipe.models.search.SearchResult` (each
        with its best candidate's out-of-fold probabilities, ``oof``).
    """
    out = run_selection(kinds, x, y, groups, folds=folds, seed=random_state, large=large,
                        vote=vote, refit=False, on_step=on_step)
    return out.best, out.results


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
        Outer patient-grouped stratified folds (at least 2).
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
    out = run_selection(kinds, x, y, groups, folds=None, outer_folds=max(outer_folds, 2),
                        inner_folds=inner_folds, seed=seed, large=large, vote=vote,
                        refit=False, on_step=on_step)
    assert out.nested is not None
    return out.nested
