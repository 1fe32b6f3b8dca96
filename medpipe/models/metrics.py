"""Classification metrics with bootstrap confidence intervals, ROC and confusion.

Binary models (a 1-D P(class 1)) get :func:`binary_metrics`; k > 2 classes (an
``(n, k)`` probability matrix, columns in the order of the class codes) get
:func:`multiclass_metrics`: the macro and per-class one-vs-rest AUC, accuracy,
balanced accuracy and per-class sensitivity of the argmax decision, and the
multi-class Brier score.  :func:`classification_metrics` picks the right one.

The intervals come from a percentile bootstrap.  Given ``groups`` (the pseudonymous
patient key per sample) it is a *cluster* bootstrap: patients are drawn with
replacement and each drawn patient brings all of its samples, so that correlated
images of one patient do not pass for independent evidence.  Calibration (Brier score,
reliability diagram) is in :mod:`medpipe.models.calibration`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from medpipe.models.multiclass import (
    MULTICLASS_METRICS,
    class_key,
    intervals,
    multiclass_metrics,
    ovr_aucs,
)

__all__ = [
    "METRICS",
    "MULTICLASS_METRICS",
    "binary_metrics",
    "multiclass_metrics",
    "classification_metrics",
    "is_multiclass",
    "auc_score",
    "ovr_aucs",
    "metric_keys",
    "confusion_lines",
    "point_metrics",
    "confusion",
    "roc_png",
    "format_metric",
    "youden_threshold",
    "bootstrap_indices",
]

#: Reported metrics, in order.
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy")
_LABELS = {
    "auc": "AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "balanced_accuracy": "Balanced accuracy",
    "brier": "Brier score",
}
def is_multiclass(prob: np.ndarray) -> bool:
    """Whether ``prob`` is a k-class probability matrix (``(n, k)``), not P(class 1)."""
    return np.ndim(prob) == 2


def auc_score(y_true: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC: binary (P(class 1)) or the macro one-vs-rest AUC of a k-class matrix.

    NaN where undefined (one class only; for k classes, any class absent), as
    ``roc_auc_score(y, prob, multi_class="ovr", average="macro")`` would refuse.
    """
    y = np.asarray(y_true).astype(int)
    if not is_multiclass(prob):
        both = (y == 1).any() and (y == 0).any()
        return float(roc_auc_score(y, np.asarray(prob, dtype=float))) if both else np.nan
    aucs = ovr_aucs(y, prob)
    return float(aucs.mean()) if np.isfinite(aucs).all() else np.nan


def classification_metrics(
    y_true: np.ndarray, prob: np.ndarray, *, classes: list | None = None,
    threshold: float | None = 0.5, **kw: object,
) -> dict[str, dict[str, float]]:
    """:func:`binary_metrics` (at ``threshold``) for P(class 1), :func:`multiclass_metrics`
    for a k-class matrix; ``kw`` are the bootstrap settings of both."""
    if is_multiclass(prob):
        return multiclass_metrics(y_true, prob, classes=classes, **kw)  # type: ignore[arg-type]
    thr = 0.5 if threshold is None else threshold
    return binary_metrics(y_true, prob, threshold=thr, **kw)  # type: ignore[arg-type]


def metric_keys(metrics: Mapping[str, object]) -> list[str]:
    """The metrics of a metrics dict in print order (binary or k-class; no ``support``)."""
    if "specificity" in metrics:
        return [k for k in METRICS if k in metrics]
    names = metrics.get("support", {}).get("classes", [])  # type: ignore[union-attr]
    return [*(k for k in MULTICLASS_METRICS if k in metrics),
            *(class_key("auc", n) for n in names),
            *(class_key("sensitivity", n) for n in names)]


def point_metrics(y_true: np.ndarray, prob: np.ndarray, *, threshold: float = 0.5) -> dict:
    """AUC, accuracy, sensitivity, specificity and balanced accuracy (NaN where undefined).

    Class 1 is the positive class; a sample is predicted positive when
    ``prob >= threshold``.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    pred = p >= threshold
    pos, neg = y == 1, y == 0
    sens = float(pred[pos].mean()) if pos.any() else np.nan
    spec = float((~pred[neg]).mean()) if neg.any() else np.nan
    return {
        "auc": float(roc_auc_score(y, p)) if pos.any() and neg.any() else np.nan,
        "accuracy": float((pred == pos).mean()) if y.size else np.nan,
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2,
    }


def bootstrap_indices(
    n: int, *, n_boot: int, seed: int = 0, groups: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Row indices of ``n_boot`` bootstrap resamples.

    Parameters
    ----------
    n
        Number of samples.
    n_boot
        Number of resamples.
    seed
        Seed of ``numpy.random.default_rng``.
    groups
        Cluster (patient) key per sample, or None for the sample-level bootstrap.  With
        groups, each resample draws as many patients as there are, with replacement,
        and takes all samples of each drawn patient.  Patients are numbered in order of
        their first sample, so with one sample per patient the resamples are exactly
        those of the sample-level bootstrap with the same seed.

    Yields
    ------
    numpy.ndarray
        Indices into the samples (a patient's rows stay together, in their order).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, n)
        return
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups has shape {g.shape}; expected ({n},)")
    _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # cluster number by first appearance
    code = np.empty_like(order)
    code[order] = np.arange(order.size)
    code = code[inverse.ravel()]
    rows = np.argsort(code, kind="stable")  # samples sorted by cluster, stable
    starts = np.searchsorted(code[rows], np.arange(order.size + 1))
    members = [rows[starts[c]:starts[c + 1]] for c in range(order.size)]
    for _ in range(n_boot):
        pick = rng.integers(0, order.size, order.size)
        yield np.concatenate([members[c] for c in pick])


def binary_metrics(
    y_true: np.ndarray,
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics and the Brier score with percentile bootstrap confidence intervals.

    Parameters
    ----------
    y_true
        0/1 labels.
    prob
        Predicted probability of class 1 (the Brier score needs a probability).
    threshold
        Decision threshold on ``prob`` for the threshold-based metrics.
    n_boot
        Bootstrap resamples.  Resamples in which a metric is undefined (e.g. a single
        class for AUC) are left out of that metric's interval.
    level
        Confidence level of the interval.
    seed
        Seed of the resampling.
    groups
        Patient key per sample: resample patients (cluster bootstrap, see
        :func:`bootstrap_indices`).  None resamples samples (right only when every
        sample is its own patient).

    Returns
    -------
    dict
        ``{metric: {"value", "ci_low", "ci_high"}}`` for :data:`METRICS` and
        ``"brier"``, plus ``{"n", "n_positive", "threshold", "n_patients",
        "bootstrap"}`` under the key ``"support"``.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    keys = (*METRICS, "brier")

    def stats(yy: np.ndarray, pp: np.ndarray) -> dict[str, float]:
        out = point_metrics(yy, pp, threshold=threshold)
        out["brier"] = float(np.mean((pp - yy) ** 2)) if yy.size else np.nan
        return out

    point = stats(y, p)
    boots: dict[str, list[float]] = {k: [] for k in keys}
    for idx in bootstrap_indices(y.size, n_boot=n_boot, seed=seed, groups=groups):
        for k, v in stats(y[idx], p[idx]).items():
            if np.isfinite(v):
                boots[k].append(v)
    out = intervals({k: point[k] for k in keys}, boots, level)
    out["support"] = {
        "n": int(y.size), "n_positive": int(y.sum()), "threshold": threshold,
        "n_patients": int(len(np.unique(groups))) if groups is not None else int(y.size),
        "bootstrap": "patient (cluster)" if groups is not None else "sample",
    }
    return out


def youden_threshold(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The probability threshold maximising Youden's J (sensitivity + specificity - 1).

    Returns 0.5 when either class is absent.  Ties take the threshold closest to 0.5.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    if not (y == 1).any() or not (y == 0).any():
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    j = tpr - fpr
    best = np.flatnonzero(np.isclose(j, j.max()))
    finite = [i for i in best if np.isfinite(thr[i])]
    if not finite:
        return 0.5
    i = min(finite, key=lambda k: abs(thr[k] - 0.5))
    return float(min(max(thr[i], 0.0), 1.0))


def format_metric(name: str, m: Mapping[str, float]) -> str:
    """``AUC 0.912 (95% CI 0.87-0.95)``."""
    label = _LABELS.get(name)
    if label is None:
        metric, _, cls = name.partition("_")
        label = {"auc": f"AUC {cls} vs rest", "sensitivity": f"Sensitivity {cls}"}.get(
            metric, name) if cls else name
    return f"{label} {m['value']:.3f} (95% CI {m['ci_low']:.2f}-{m['ci_high']:.2f})"


def confusion(y_true: np.ndarray, prob: np.ndarray, *, threshold: float | None = 0.5,
              classes: list | None = None) -> dict:
    """Confusion matrix: ``{"tn", "fp", "fn", "tp"}`` at ``threshold`` for P(class 1);
    for a k-class matrix ``{"classes", "matrix"}`` of the argmax decision (rows the true
    class, columns the predicted one, as :func:`sklearn.metrics.confusion_matrix`)."""
    y = np.asarray(y_true).astype(int)
    if is_multiclass(prob):
        k = np.shape(prob)[1]
        names = [str(c) for c in (classes if classes is not None else range(k))]
        pred = np.argmax(np.asarray(prob, dtype=float), axis=1)
        m = confusion_matrix(y, pred, labels=list(range(k)))
        return {"classes": names, "matrix": m.astype(int).tolist(),
                "rows": "true class", "columns": "predicted class"}
    threshold = 0.5 if threshold is None else threshold
    pred = (np.asarray(prob, dtype=float) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def confusion_lines(c: Mapping[str, object]) -> list[str]:
    """A :func:`confusion` dict as printable lines (one, or a table of k rows)."""
    if "matrix" not in c:
        return [f"confusion: TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  TN {c['tn']}"]
    names = [str(n) for n in c["classes"]]  # type: ignore[attr-defined]
    width = max(6, *(len(n) for n in names))
    lines = ["confusion (rows true, columns predicted):",
             " " * (width + 2) + "".join(f"{n:>{width + 1}}" for n in names)]
    for n, row in zip(names, c["matrix"], strict=True):  # type: ignore[call-overload]
        lines.append(f"  {n:<{width}}" + "".join(f"{v:>{width + 1}}" for v in row))
    return lines


def roc_png(y_true: np.ndarray, prob: np.ndarray, *, title: str = "ROC",
            classes: list | None = None) -> bytes:
    """The ROC curve as PNG bytes (matplotlib, Agg; no display needed): one curve for
    P(class 1), one one-vs-rest curve per class (present) for a k-class matrix."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    if is_multiclass(p):
        names = [str(c) for c in (classes if classes is not None else range(p.shape[1]))]
        curves = [(y == c, p[:, c], f"{n} vs rest") for c, n in enumerate(names)
                  if (y == c).any() and (y != c).any()]
    else:
        curves = [(y, p, None)]
    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for yy, pp, name in curves:
        fpr, tpr, _ = roc_curve(yy.astype(int), pp)
        auc = roc_auc_score(yy.astype(int), pp)
        ax.plot(fpr, tpr, lw=2, label=f"{name}: AUC {auc:.3f}" if name else f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
