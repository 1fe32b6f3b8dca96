"""Binary classification metrics with bootstrap confidence intervals, ROC and confusion.

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

__all__ = [
    "METRICS",
    "binary_metrics",
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
    alpha = (1 - level) / 2
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        b = np.asarray(boots[k])
        lo, hi = (np.quantile(b, [alpha, 1 - alpha]) if b.size else (np.nan, np.nan))
        out[k] = {"value": point[k], "ci_low": float(lo), "ci_high": float(hi)}
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
