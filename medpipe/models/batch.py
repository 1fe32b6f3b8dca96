"""The whole selection of ``train`` and its nested CV as one batch of fold fits.

``train --estimator all`` runs the selection rule (each kind's grid on patient-grouped
folds, the soft vote of the tuned kinds, the best mean fold AUC wins) once on all the
training rows and once inside every outer fold of the nested CV
(:mod:`medpipe.models.nested`).  Run one search after the other, that is ``1 + outer``
rounds of a few dozen fits each, every round waiting for its slowest fit, the data sent
with every search and the soft vote refitting its members on every fold.

Here every (selection, kind, candidate, fold) fit is one task of a single batch on the
current Dask scheduler (the data scattered once), and the refits — the winner on all the
rows, and each outer fold's winner on its outer-train rows — are a second batch.  Each
task fits a clone on its training rows and returns the probabilities of its test rows,
so the search score of a candidate is its mean fold AUC (what ``GridSearchCV`` with the
AUC scorer computes), and the soft vote's out-of-fold probabilities are the mean of its
members' (the same fits: a vote member fitted on a fold *is* that kind's best candidate
fitted on that fold), without fitting them again.  Nothing changes in what each
selection sees: its tasks get only its own rows (an outer fold's inner folds split its
outer-train rows), and the outer-test rows are only ever predicted by the refit of that
fold's winner.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask_glm.algorithms
import numpy as np
from dask_ml.wrappers import ParallelPostFit
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from medpipe.errors import ModelError
from medpipe.models import search as srch
from medpipe.models.estimators import (
    ENSEMBLE,
    LARGE_SAMPLES,
    SoftVote,
    get_estimator,
    make_pipeline,
    param_grid,
)
from medpipe.models.metrics import auc_score
from medpipe.models.probability import fit_pipeline, proba_block

__all__ = [
    "OuterFold", "NestedResult", "Outcome", "fit_predict", "fold_probabilities", "refit",
    "run_selection", "vote_result",
]

log = logging.getLogger(__name__)

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class OuterFold:
    """One outer fold of the nested CV (indices into the rows given to it)."""

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
    """Outcome of the nested CV."""

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


@dataclass
class Outcome:
    """Outcome of :func:`run_selection`."""

    #: the winner of the selection on all the rows, and every kind's result there
    best: srch.SearchResult
    results: list[srch.SearchResult]
    #: the winner refitted on all the rows (``None`` unless asked for)
    model: ParallelPostFit | None
    #: the nested CV (``None`` without outer folds)
    nested: NestedResult | None


#: Threads running a fold fit, in which dask-glm's solvers see no distributed client.
_IN_PROCESS = threading.local()
_client_of_dask_glm = dask_glm.algorithms.get_distributed_client


def _dask_glm_client() -> Any:
    """dask-glm's client lookup, ``None`` inside a fold fit (see :func:`fit_predict`)."""
    return None if getattr(_IN_PROCESS, "on", False) else _client_of_dask_glm()


# dask-glm's L-BFGS scatters every iterate to the current client with hash=True, so two
# fold fits running at once (on two workers) scatter the same key (the zero start) and
# the release of one cancels the other's graph: "lost dependencies" (seen in make demo).
dask_glm.algorithms.get_distributed_client = _dask_glm_client


def fit_predict(pipe: Any, x: np.ndarray, y: np.ndarray, train: np.ndarray,
                test: np.ndarray | None) -> Any:
    """One task: a clone of ``pipe`` fitted on rows ``train``; the probabilities of rows
    ``test`` (the fitted pipeline itself when ``test`` is ``None``).

    The fit runs in this thread on the synchronous scheduler: the rows are a NumPy
    matrix already here, and each task is one of many run in parallel.
    """
    _IN_PROCESS.on = True
    try:
        with dask.config.set(scheduler="synchronous"):
            fitted = fit_pipeline(clone(pipe), x[train], y[train])
            return fitted if test is None else proba_block(fitted, x[test])
    finally:
        _IN_PROCESS.on = False


def _run(calls: list[tuple], x: np.ndarray, y: np.ndarray,
         done: Callable[[int], None]) -> list[Any]:
    """Run ``fit_predict(pipe, x, y, train, test)`` for each ``(pipe, train, test)``.

    On the distributed client when there is one (``x`` and ``y`` scattered once to
    every worker), else on local threads; ``done(i)`` is called as call ``i`` finishes.
    """
    try:
        from distributed import as_completed, get_client

        client = get_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        with cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            # each fit sees this context (the pipelines' class count, feature names)
            futs = {pool.submit(contextvars.copy_context().run, fit_predict, p, x, y, tr, te): i
                    for i, (p, tr, te) in enumerate(calls)}
            for fut in cf.as_completed(futs):
                fut.result()
                done(futs[fut])
            return [f.result() for f in sorted(futs, key=futs.get)]
    xf, yf = client.scatter([x, y], broadcast=True, hash=False)
    futures = [client.submit(fit_predict, p, xf, yf, tr, te, pure=False)
               for p, tr, te in calls]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                fut.result()  # raises the task's error
            done(index[fut.key])
        return client.gather(futures)
    finally:
        client.cancel([*futures, xf, yf])


def fold_probabilities(pipe: Any, x: np.ndarray, y: np.ndarray, folds: Folds) -> np.ndarray:
    """Out-of-fold probabilities of ``pipe``: each fold predicted by a clone fitted on the
    other folds, the fold fits run as one batch (P(class 1), or the ``(n, k)`` matrix)."""
    parts = _run([(pipe, tr, te) for tr, te in folds], x, y, lambda _i: None)
    return _assemble(parts, folds, len(y))


def refit(best: srch.SearchResult, x: np.ndarray, y: np.ndarray, *,
          seed: int = 0) -> ParallelPostFit:
    """``best`` refitted on all the rows (a vote: its members, one task each)."""
    rows = np.arange(len(y))
    fitted = _run([(p, rows, None) for p in _members(best, seed)], x, y, lambda _i: None)
    return _final_model(best, fitted, y, seed)


def _assemble(parts: Sequence[np.ndarray], folds: Folds, n: int) -> np.ndarray:
    """The fold predictions ``parts`` placed at their folds' test rows (NaN elsewhere)."""
    oof = np.full((n, *np.shape(parts[0])[1:]), np.nan)  # (n, k) for k classes
    for (_, te), p in zip(folds, parts, strict=True):
        oof[te] = p
    return oof


def _final_model(best: srch.SearchResult, fitted: list[Any], y: np.ndarray,
                 seed: int) -> ParallelPostFit:
    """The refitted winner (its members' fits, for a vote) wrapped for block-wise scoring."""
    est = fitted[0]
    if best.kind == ENSEMBLE:
        est = SoftVote.from_fitted(best.pipeline(random_state=seed).estimators, fitted, y)
    return ParallelPostFit(estimator=est)


def _candidates(kind: str, large: bool, random_state: int) -> list[tuple[dict, Any]]:
    """``(params, pipeline)`` of every grid point of ``kind`` (one, ``{}``, without a grid)."""
    grid = param_grid(kind, large=large)
    base = make_pipeline(kind, large=large, random_state=random_state)
    points = list(ParameterGrid(grid)) if grid else [{}]
    return [(p, clone(base).set_params(**p)) for p in points]


def _result(kind: str, points: list[dict], probs: list[list[np.ndarray]], y: np.ndarray,
            folds: Folds, large: bool) -> srch.SearchResult:
    """A kind's search result from its candidates' fold probabilities."""
    cands, oofs = [], []
    for params, parts in zip(points, probs, strict=True):
        scores = [srch.fold_auc(y[te], p) for (_, te), p in zip(folds, parts, strict=True)]
        cands.append({"params": srch.plain_params(params), "mean_auc": float(np.mean(scores)),
                      "std_auc": float(np.std(scores))})
        oofs.append(_assemble(parts, folds, len(y)))
    best = int(np.nanargmax([c["mean_auc"] for c in cands]))
    return srch.SearchResult(kind, cands[best]["params"], cands[best]["mean_auc"], cands,
                             large, oof=oofs[best])


def vote_result(results: Sequence[srch.SearchResult], y: np.ndarray,
                folds: Folds) -> srch.SearchResult:
    """The soft vote of the tuned kinds: the mean of their out-of-fold probabilities.

    The members are the results without the incremental SVM (no probabilities) and
    without kinds registered with ``vote=False`` (the CNN); each must carry its ``oof``
    on ``folds``.  Its score is the mean fold AUC, as each member's.

    Raises
    ------
    ModelError
        Fewer than two members.
    """
    members = [r for r in results if not r.large and r.kind != ENSEMBLE
               and get_estimator(r.kind).vote]
    if len(members) < 2:
        raise ModelError("a soft vote needs at least two tuned estimators with probabilities")
    oof = np.mean([m.oof for m in members], axis=0)
    scores = [srch.fold_auc(y[te], oof[te]) for _, te in folds]
    params = {m.kind: m.best_params for m in members}
    score = float(np.mean(scores))
    return srch.SearchResult(
        ENSEMBLE, params, score,
        [{"params": params, "mean_auc": score, "std_auc": float(np.std(scores))}],
        members=members, oof=oof)


def _members(best: srch.SearchResult, random_state: int) -> list[Any]:
    """The unfitted pipelines a refit of ``best`` fits (a vote's members, one each)."""
    pipe = best.pipeline(random_state=random_state)
    return [p for _, p in pipe.estimators] if best.kind == ENSEMBLE else [pipe]


def run_selection(
    kinds: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    folds: Folds | None,
    outer_folds: int = 0,
    inner_folds: int = 5,
    seed: int = 0,
    large: bool | None = None,
    vote: bool = True,
    refit: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> Outcome:
    """The selection on ``folds`` and the nested CV of it, as two batches of fold fits.

    Parameters
    ----------
    kinds
        Estimator kinds to search.
    x, y, groups
        The rows selection may see (features, class codes, patient keys).
    folds
        Patient-grouped folds of all the rows for the selection whose winner is
        returned (``None``: only the nested CV).
    outer_folds, inner_folds
        The nested CV: outer patient-grouped folds (fewer than 2: none), and the folds
        of the selection inside each outer-train part.
    seed
        Seed of the nested CV's folds and of the estimators.
    large
        Force (or forbid) the incremental SVM (default by sample count).
    vote
        Also score the soft vote of the tuned kinds (two or more with probabilities).
    refit
        Refit the winner on all the rows (:attr:`Outcome.model`).
    on_step
        Called with the kind when all of a selection's fits of that kind are done, with
        ``ensemble`` after its vote, ``outer refit`` after each outer fold's refit and
        ``refit`` after the final one: progress reporting.

    Returns
    -------
    Outcome
    """
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    large = len(y) >= LARGE_SAMPLES if large is None else large
    step = on_step or (lambda _name: None)
    outer = srch.grouped_folds(y, groups, n_splits=outer_folds, seed=seed) \
        if outer_folds >= 2 else []
    inner = []
    for tr, _ in outer:
        local = srch.grouped_folds(y[tr], groups[tr], n_splits=inner_folds, seed=seed)
        inner.append([(tr[a], tr[b]) for a, b in local])
    selections = ([list(folds)] if folds is not None else []) + inner
    cands = {k: _candidates(k, large, seed) for k in kinds}
    # batch 1: every fit of every selection; the largest selection's first
    calls, slot = [], []
    for s, sfolds in enumerate(selections):
        for k in kinds:
            for c, (_, pipe) in enumerate(cands[k]):
                for f, (tr, te) in enumerate(sfolds):
                    calls.append((pipe, tr, te))
                    slot.append((s, k, c, f))
    left = {(s, k): len(cands[k]) * len(sf) for s, sf in enumerate(selections) for k in kinds}
    log.info("%d selections x %d kinds: %d fits on %d samples x %d features",
             len(selections), len(kinds), len(calls), *x.shape)

    def fitted(i: int) -> None:
        s, k, _, _ = slot[i]
        left[s, k] -= 1
        if left[s, k] == 0:
            step(k)

    probs = _run(calls, x, y, fitted)
    parts: dict[tuple[str, int], list[list[list]]] = {}
    for (s, k, c, f), p in zip(slot, probs, strict=True):
        grid = parts.setdefault((k, s), [[[] for _ in selections[s]] for _ in cands[k]])
        grid[c][f] = p
    picked: list[tuple[srch.SearchResult, list[srch.SearchResult]]] = []
    for s, sfolds in enumerate(selections):
        results = [_result(k, [p for p, _ in cands[k]], parts[k, s], y, sfolds, large)
                   for k in kinds]
        if vote and sum(not r.large for r in results) >= 2:
            results.append(vote_result(results, y, sfolds))
            step(ENSEMBLE)
        picked.append((max(results, key=lambda r: r.best_score), results))
    # batch 2: the final refit on all the rows, each outer fold's on its outer-train rows
    final = folds is not None
    calls, slot = [], []
    for s, (best, _) in enumerate(picked):
        if s == 0 and final and not refit:
            continue
        o = s - final
        rows = np.arange(len(y)) if o < 0 else outer[o][0]
        test = None if o < 0 else outer[o][1]
        for pipe in _members(best, seed):
            calls.append((pipe, rows, test))
            slot.append(s)
    left2 = {s: slot.count(s) for s in set(slot)}

    def refitted(i: int) -> None:
        left2[slot[i]] -= 1
        if left2[slot[i]] == 0:
            step("refit" if final and slot[i] == 0 else "outer refit")

    out = _run(calls, x, y, refitted)
    by_sel: dict[int, list[Any]] = {}
    for s, r in zip(slot, out, strict=True):
        by_sel.setdefault(s, []).append(r)
    model = _final_model(picked[0][0], by_sel[0], y, seed) if final and refit else None
    nres = None
    if outer:
        k = int(y.max()) + 1 if y.size else 2
        oof = np.full((len(y), k) if k > 2 else len(y), np.nan)
        done = []
        for o, (tr, te) in enumerate(outer):
            best = picked[o + final][0]
            prob = np.mean(by_sel[o + final], axis=0)
            oof[te] = prob
            auc = auc_score(y[te], prob)  # k classes: macro one-vs-rest (NaN: class absent)
            done.append(OuterFold(tr, te, inner[o], best.kind, best.best_params,
                                  float(best.best_score), auc))
            log.info("nested CV: outer fold %d winner %s, selection AUC %.3f, outer AUC %.3f",
                     o + 1, best.kind, best.best_score, auc)
        nres = NestedResult(done, oof, len(inner[-1]), seed, list(kinds))
    best, results = picked[0] if final else (None, [])
    return Outcome(best, results, model, nres)  # type: ignore[arg-type]
