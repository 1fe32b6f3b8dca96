"""Class probabilities of any medpipe pipeline, and the AUC scorer of the searches.

:func:`positive_proba` (scoring, evaluation, ``predict``) and :func:`auc_scorer` (the
grid searches) read the probabilities of every estimator kind the same way: P(class 1)
of a binary model, the ``(n, k)`` class matrix of a k-class one, the logistic function of
the margin for the hinge-loss incremental SVM, NaN for rows with a non-finite feature.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask_ml.wrappers import Incremental, ParallelPostFit
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from medpipe.models import multiclass as _mc

__all__ = ["auc_scorer", "fit_pipeline", "positive_proba", "proba_block"]


def _final_step(model: Any) -> Any:
    est = model.estimator if isinstance(model, ParallelPostFit) and not isinstance(
        model, Incremental
    ) else model
    return est


def proba_block(est: Any, x: np.ndarray) -> np.ndarray:
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
        if margin.ndim == 2:  # k classes: the softmax of the one-vs-rest margins
            return _mc.rows_into(ok, _mc.softmax(margin))
        out[ok] = 1.0 / (1.0 + np.exp(-np.clip(margin, -500, 500)))
        return out
    proba = np.asarray(est.predict_proba(x), dtype=float)
    classes = list(getattr(clf, "classes_", [0, 1]))
    if len(classes) > 2:  # k classes: the (n, k) matrix of the class codes
        return _mc.rows_into(ok, _mc.class_matrix(proba, np.asarray(classes)))
    out[ok] = proba[:, classes.index(1)] if 1 in classes else proba[:, -1]
    return out


def positive_proba(model: Any, x: np.ndarray | da.Array) -> np.ndarray | da.Array:
    """Probability of class 1 for each row of ``x`` (an ``(n, k)`` matrix for k > 2).

    A Dask array gives a lazy Dask array computed block by block (what
    :class:`~dask_ml.wrappers.ParallelPostFit` does), so scoring runs on the cluster.
    """
    est = _final_step(model)
    k = _mc.n_classes(est)
    if isinstance(x, da.Array) and k > 2:  # a lazy (n, k) matrix, block by block
        x = x.rechunk({1: -1})
        return x.map_blocks(lambda b: proba_block(est, b), chunks=(x.chunks[0], (k,)),
                            dtype=np.float64, meta=np.array([[]]))
    if isinstance(x, da.Array):
        x = x.rechunk({1: -1})
        return x.map_blocks(
            lambda b: proba_block(est, b), drop_axis=1, dtype=np.float64, meta=np.array([])
        )
    return proba_block(est, np.asarray(x))


def auc_scorer(estimator: Any, x: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC scorer (sklearn scorer signature) for any of the pipelines.

    dask-ml's estimators do not carry scikit-learn's classifier tags, so the stock
    ``"roc_auc"`` scorer would pass them the two-column probabilities.
    """
    prob = proba_block(estimator, x)
    if prob.ndim == 2:  # k classes: the macro one-vs-rest AUC (roc_auc_ovr)
        return float(np.mean(_mc.ovr_aucs(np.asarray(y).astype(int), prob)))
    return float(roc_auc_score(np.asarray(y).astype(int), prob))


def fit_pipeline(pipe: Any, x: Any, y: Any) -> Any:
    """Fit ``pipe`` on ``x, y``; an incremental pipeline gets Dask arrays and the classes."""
    if isinstance(pipe, Pipeline) and isinstance(pipe[-1], Incremental):
        xd = x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=(10_000, -1))
        yd = y if isinstance(y, da.Array) else da.from_array(np.asarray(y), chunks=xd.chunks[0])
        return pipe.fit(xd, yd, clf__classes=_mc.codes_of(y))
    return pipe.fit(x, y)
