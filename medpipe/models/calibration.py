"""Calibration of predicted probabilities: the Brier score and the reliability diagram.

:func:`calibration_summary` returns the numbers (for ``model.json``, evaluation reports
and the QA report) and :func:`reliability_png` draws them.  Both are threshold-free.
For k > 2 classes (an ``(n, k)`` probability matrix) the Brier score is the multi-class
one (:func:`sklearn.metrics.brier_score_loss` with ``labels``: the mean squared distance
to the one-hot label, 0 to 2) and the diagram has one one-vs-rest curve per class.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

__all__ = ["N_BINS", "calibration_summary", "reliability_png"]

#: Bins of the reliability diagram (quantile bins: each holds about as many samples).
N_BINS = 10


def calibration_summary(
    y_true: np.ndarray, prob: np.ndarray, *, n_bins: int = N_BINS, strategy: str = "quantile",
    classes: list | None = None,
) -> dict[str, Any]:
    """Brier score and reliability-diagram points of P(class 1).

    Parameters
    ----------
    y_true
        0/1 labels.
    prob
        Predicted probability of class 1, in [0, 1].
    n_bins
        Bins of the reliability diagram.
    strategy
        ``quantile`` (equal counts) or ``uniform`` (equal widths), as
        :func:`sklearn.calibration.calibration_curve`.
    classes
        Names of the class codes, for a k-class ``(n, k)`` ``prob``.

    Returns
    -------
    dict
        ``brier`` (:func:`sklearn.metrics.brier_score_loss`; NaN without samples),
        ``mean_predicted`` and ``fraction_positive`` per non-empty bin (x and y of the
        diagram), ``count`` per bin, ``n_bins``, ``strategy``, ``n``.  For k classes:
        ``brier`` (multi-class), ``classes``, ``n_bins``, ``strategy``, ``n`` and
        ``per_class``: class name -> this summary of its one-vs-rest probability.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    if p.ndim == 2:
        return _multiclass_summary(y, p, n_bins, strategy, classes)
    if y.size == 0:
        return {"brier": float("nan"), "mean_predicted": [], "fraction_positive": [],
                "count": [], "n_bins": n_bins, "strategy": strategy, "n": 0}
    brier = float(brier_score_loss(y, p, pos_label=1))
    frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    # the same bin edges as calibration_curve, to count the samples of each point
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=len(edges))
    counts = counts[counts > 0]
    return {
        "brier": brier,
        "mean_predicted": [float(v) for v in mean],
        "fraction_positive": [float(v) for v in frac],
        "count": [int(c) for c in counts],
        "n_bins": n_bins,
        "strategy": strategy,
        "n": int(y.size),
    }


def _multiclass_summary(y: np.ndarray, p: np.ndarray, n_bins: int, strategy: str,
                        classes: list | None) -> dict[str, Any]:
    k = p.shape[1]
    names = [str(c) for c in (classes if classes is not None else range(k))]
    brier = (float(brier_score_loss(y, p, labels=list(range(k)))) if y.size
             else float("nan"))
    per_class = {n: calibration_summary((y == c).astype(int), p[:, c], n_bins=n_bins,
                                        strategy=strategy) for c, n in enumerate(names)}
    return {"brier": brier, "classes": names, "per_class": per_class, "n_bins": n_bins,
            "strategy": strategy, "n": int(y.size)}


def reliability_png(
    y_true: np.ndarray, prob: np.ndarray, *, title: str = "Reliability", n_bins: int = N_BINS,
    classes: list | None = None,
) -> bytes:
    """The reliability diagram (observed vs predicted, with a histogram) as PNG bytes;
    one one-vs-rest curve per class for a k-class ``(n, k)`` ``prob``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = calibration_summary(y_true, prob, n_bins=n_bins, classes=classes)
    curves = ([(f"{n} vs rest: Brier {c['brier']:.3f}", c) for n, c in s["per_class"].items()]
              if "per_class" in s else [(f"Brier {s['brier']:.3f}", s)])
    fig = Figure(figsize=(4, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfectly calibrated")
    for label, c in curves:
        ax.plot(c["mean_predicted"], c["fraction_positive"], "o-", lw=2, label=label)
    ax.set(ylabel="observed fraction positive", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    hist.hist(np.asarray(prob, dtype=float).ravel(), bins=20, range=(0, 1), color="C0")
    hist.set(xlabel="predicted probability", ylabel="samples")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
