"""Binary classification metrics with bootstrap confidence intervals, ROC and confusion."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

__all__ = [
    "METRICS",
    "binary_metrics",
    "point_metrics",
    "confusion",
    "roc_png",
    "format_metric",
    "youden_threshold",
]

#: Reported metrics, in order.
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy")
_LABELS = {
    "auc": "AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "balanced_accuracy": "Balanced accuracy",
}


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


def binary_metrics(
    y_true: np.ndarray,
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Metrics with percentile bootstrap confidence intervals.

    Parameters
    ----------
    y_true
        0/1 labels.
    prob
        Predicted probability (or any score) of class 1.
    threshold
        Decision threshold on ``prob`` for the threshold-based metrics.
    n_boot
        Bootstrap resamples (samples drawn with replacement, same size).  Resamples in
        which a metric is undefined (e.g. a single class for AUC) are left out of that
        metric's interval.
    level
        Confidence level of the interval.
    seed
        Seed of the resampling.

    Returns
    -------
    dict
        ``{metric: {"value", "ci_low", "ci_high"}}`` for :data:`METRICS`, plus
        ``{"n": ..., "n_positive": ...}`` under the key ``"support"``.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    point = point_metrics(y, p, threshold=threshold)
    rng = np.random.default_rng(seed)
    boots = {k: [] for k in METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        for k, v in point_metrics(y[idx], p[idx], threshold=threshold).items():
            if np.isfinite(v):
                boots[k].append(v)
    alpha = (1 - level) / 2
    out: dict[str, dict[str, float]] = {}
    for k in METRICS:
        b = np.asarray(boots[k])
        lo, hi = (np.quantile(b, [alpha, 1 - alpha]) if b.size else (np.nan, np.nan))
        out[k] = {"value": point[k], "ci_low": float(lo), "ci_high": float(hi)}
    out["support"] = {"n": int(y.size), "n_positive": int(y.sum()), "threshold": threshold}
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
    label = _LABELS.get(name, name)
    return f"{label} {m['value']:.3f} (95% CI {m['ci_low']:.2f}-{m['ci_high']:.2f})"


def confusion(y_true: np.ndarray, prob: np.ndarray, *, threshold: float = 0.5) -> dict:
    """Confusion matrix ``{"tn", "fp", "fn", "tp"}`` at ``threshold``."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(prob, dtype=float) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def roc_png(y_true: np.ndarray, prob: np.ndarray, *, title: str = "ROC") -> bytes:
    """The ROC curve as PNG bytes (matplotlib, Agg; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fpr, tpr, _ = roc_curve(np.asarray(y_true).astype(int), np.asarray(prob, dtype=float))
    auc = roc_auc_score(np.asarray(y_true).astype(int), np.asarray(prob, dtype=float))
    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
