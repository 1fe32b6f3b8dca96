"""k-class (k > 2) labels: metrics of the argmax decision, and what training needs.

A k-class model's probabilities are an ``(n, k)`` matrix whose column ``c`` is the
probability of class code ``c`` (:func:`medpipe.models.labels.label_classes` names the
codes).  Binary models keep their 1-D P(class 1) everywhere.

* :func:`multiclass_metrics` — macro and per-class one-vs-rest AUC, accuracy, balanced
  accuracy, per-class sensitivity and the multi-class Brier score, each with a
  (patient-cluster) bootstrap CI; :mod:`medpipe.models.metrics` re-exports it.
* :func:`training_classes` — while ``train`` builds pipelines, the number of classes, so
  that estimator factories pick a k-class classifier (dask-ml's logistic regression is
  binary only: scikit-learn's multinomial one replaces it for k > 2).
* :func:`class_matrix` — a fitted classifier's ``predict_proba`` as the ``(n, k)``
  matrix of the codes (a class missing from a fit's rows gets probability 0).

The decision for k > 2 is the most probable class (argmax; no Youden threshold, which
is a binary notion).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "MULTICLASS_METRICS",
    "class_key",
    "class_matrix",
    "codes_of",
    "current_classes",
    "intervals",
    "multiclass_metrics",
    "n_classes",
    "ovr_aucs",
    "rows_into",
    "score_table",
    "softmax",
    "training_classes",
]

_CLASSES: ContextVar[int] = ContextVar("medpipe_training_classes", default=2)


@contextlib.contextmanager
def training_classes(n_classes: int) -> Iterator[None]:
    """Build the pipelines of this block for ``n_classes`` classes (2: binary).

    Parameters
    ----------
    n_classes
        Number of classes of the labels being trained on.
    """
    token = _CLASSES.set(int(n_classes))
    try:
        yield
    finally:
        _CLASSES.reset(token)


def current_classes() -> int:
    """The number of classes of the enclosing :func:`training_classes` block (default 2)."""
    return _CLASSES.get()


def n_classes(model: object) -> int:
    """Classes of a fitted classifier, pipeline or soft vote (its last step's
    ``classes_``; 2 when it has none, as the incremental binary SVM)."""
    own = getattr(model, "classes_", None)
    if own is not None:
        return max(2, len(own))
    est = getattr(model, "estimator", model)  # ParallelPostFit
    steps = getattr(est, "steps", None)
    clf = steps[-1][1] if steps else est
    base = getattr(clf, "estimator_", clf)  # Incremental
    classes = getattr(clf, "classes_", getattr(base, "classes_", None))
    return 2 if classes is None else max(2, len(classes))


def codes_of(y: object) -> list[int]:
    """The class codes a block-wise (incremental) fit must be told of up front."""
    if isinstance(y, np.ndarray) and y.size and int(y.max()) > 1:
        return list(range(int(y.max()) + 1))
    return list(range(max(2, current_classes())))


def rows_into(ok: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (rows of ``ok``) in an ``(len(ok), k)`` matrix, NaN rows elsewhere."""
    out = np.full((ok.size, matrix.shape[1]), np.nan)
    out[ok] = matrix
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (k-class probabilities of one-vs-rest margins)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def class_matrix(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``predict_proba`` columns (for ``classes``, integer codes) as columns ``0 .. k-1``.

    ``k`` is one more than the largest code; codes a fit never saw get probability 0.
    """
    codes = np.asarray(classes).astype(int)
    out = np.zeros((proba.shape[0], int(codes.max()) + 1))
    out[:, codes] = proba
    return out


#: Reported metrics of a k-class model besides the per-class ``auc_<class>`` and
#: ``sensitivity_<class>`` (one-vs-rest), in order.
MULTICLASS_METRICS = ("auc", "accuracy", "balanced_accuracy")


def ovr_aucs(y_true: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC of each class (column) of ``prob``; NaN where a class is absent.

    The Mann-Whitney form (average ranks for ties), equal to
    ``roc_auc_score(y_true == c, prob[:, c])`` for every class ``c``.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    k = p.shape[1]
    onehot = y[:, None] == np.arange(k)[None, :]
    n_pos = onehot.sum(axis=0)
    n_neg = y.size - n_pos
    ranks = rankdata(p, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * onehot).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def class_key(metric: str, name: object) -> str:
    return f"{metric}_{name}"


def _multiclass_point(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict[str, float]:
    k = p.shape[1]
    pred = np.argmax(p, axis=1)
    aucs = ovr_aucs(y, p)
    sens = np.array([float((pred[y == c] == c).mean()) if (y == c).any() else np.nan
                     for c in range(k)])
    onehot = (y[:, None] == np.arange(k)[None, :]).astype(float)
    out = {
        "auc": float(aucs.mean()) if np.isfinite(aucs).all() else np.nan,
        "accuracy": float((pred == y).mean()) if y.size else np.nan,
        "balanced_accuracy": float(np.nanmean(sens)) if np.isfinite(sens).any() else np.nan,
        "brier": float(np.mean(((p - onehot) ** 2).sum(axis=1))) if y.size else np.nan,
    }
    out.update({class_key("auc", n): float(a) for n, a in zip(names, aucs, strict=True)})
    out.update({class_key("sensitivity", n): float(v) for n, v in zip(names, sens,
                                                                      strict=True)})
    return out


def multiclass_metrics(
    y_true: np.ndarray,
    prob: np.ndarray,
    *,
    classes: list | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """k-class metrics of the argmax decision with percentile bootstrap CIs.

    Parameters
    ----------
    y_true
        Class codes ``0 .. k-1``.
    prob
        ``(n, k)`` class probabilities, column ``c`` for code ``c``.
    classes
        Class names of the codes (default ``"0" .. "k-1"``): they name the per-class
        metrics ``auc_<class>`` (one-vs-rest AUC) and ``sensitivity_<class>`` (recall).
    n_boot, level, seed, groups
        As :func:`medpipe.models.metrics.binary_metrics`: with ``groups`` (patient
        keys) patients are resampled, each with all its rows (a cluster bootstrap).
        A resample in which a metric is undefined (a class absent) is left out of
        that metric's interval.

    Returns
    -------
    dict
        ``{metric: {"value", "ci_low", "ci_high"}}`` for ``auc`` (macro one-vs-rest,
        as ``roc_auc_score(multi_class="ovr", average="macro")``), ``accuracy``,
        ``balanced_accuracy`` (mean per-class sensitivity), ``brier`` (mean over
        samples of the squared distance to the one-hot label, 0 to 2) and the
        per-class metrics, plus ``support`` (``n``, ``n_per_class``, ``classes``,
        ``decision``: ``argmax``, ``n_patients``, ``bootstrap``).  No threshold: the
        predicted class is the most probable one (the first on a tie).
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    names = [str(c) for c in (classes if classes is not None else range(p.shape[1]))]
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} probability columns")
    from medpipe.models.metrics import bootstrap_indices  # metrics imports this module

    point = _multiclass_point(y, p, names)
    boots: dict[str, list[float]] = {k: [] for k in point}
    for idx in bootstrap_indices(y.size, n_boot=n_boot, seed=seed, groups=groups):
        for k, v in _multiclass_point(y[idx], p[idx], names).items():
            if np.isfinite(v):
                boots[k].append(v)
    out = intervals(point, boots, level)
    out["support"] = {
        "n": int(y.size), "classes": names, "decision": "argmax",
        "n_per_class": {n: int((y == c).sum()) for c, n in enumerate(names)},
        "n_patients": int(len(np.unique(groups))) if groups is not None else int(y.size),
        "bootstrap": "patient (cluster)" if groups is not None else "sample",
    }
    return out


def intervals(point: dict[str, float], boots: dict[str, list[float]],
               level: float) -> dict[str, dict[str, float]]:
    alpha = (1 - level) / 2
    out: dict[str, dict[str, float]] = {}
    for k, v in point.items():
        b = np.asarray(boots[k])
        lo, hi = (np.quantile(b, [alpha, 1 - alpha]) if b.size else (np.nan, np.nan))
        out[k] = {"value": v, "ci_low": float(lo), "ci_high": float(hi)}
    return out


def score_table(prob: Any, sub: Any, meta: dict[str, Any]) -> Any:
    """The new rows of a k-class model's score table (lazy, as the binary one).

    Parameters
    ----------
    prob
        Lazy ``(n, k)`` Dask array of the class probabilities of ``sub``'s samples.
    sub
        The feature table's new samples (their coords are copied).
    meta
        The model's ``model.json`` (``classes``, ``name``, ``version``).

    Returns
    -------
    xarray.Dataset
        ``probability`` (sample, class; NaN rows where a needed feature is missing),
        ``predicted`` (the argmax class code, int8; -1 when unscorable), the ``class``
        coord (the class names, Zarr ``string``), the sample coords of the binary
        table, and ``decision = "argmax"`` among the attributes.
    """
    import dask.array as da
    import xarray as xr

    def text(a: Any) -> np.ndarray:
        return np.array([str(v) for v in a.values], dtype=object)

    names = [str(c) for c in meta["classes"]]
    bad = da.isnan(prob).any(axis=1)
    pred = da.where(bad, -1, da.argmax(da.where(da.isnan(prob), -np.inf, prob), axis=1))
    coords = {c: ("sample", text(sub[c])) for c in ("series", "series_uid", "study", "patient")
              if c in sub.coords}
    return xr.Dataset(
        {"probability": (("sample", "class"), prob), "predicted": ("sample", pred.astype(np.int8))},
        coords={"sample": text(sub["sample"]), "class": np.array(names, dtype=object), **coords},
        attrs={"model": meta["name"], "version": meta["version"], "decision": "argmax",
               "classes": names, "features_group": meta["features_group"]},
    )
