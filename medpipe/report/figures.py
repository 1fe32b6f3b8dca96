"""The QA report's figures, as PNG bytes (matplotlib's Agg canvas; no display needed).

Every plot range is quantile-clipped (:func:`clipped_range`): values beyond it are
drawn in the edge bins, so one extreme value cannot flatten a plot.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CLIP_QUANTILES",
    "clipped_range",
    "figure_png",
    "thumbnail_png",
    "drift_png",
    "calibration_png",
]

#: Quantiles that bound every plot range (and every thumbnail's grey levels).
CLIP_QUANTILES = (0.01, 0.99)


def clipped_range(
    *values: np.ndarray, quantiles: tuple[float, float] = CLIP_QUANTILES
) -> tuple[float, float]:
    """The ``quantiles`` of the finite values of all arrays, widened when degenerate.

    Returns ``(lo, hi)`` with ``hi > lo``: ``(v - 0.5, v + 0.5)`` for a constant ``v``,
    ``(0, 1)`` without finite values.
    """
    both = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values] or [[]])
    both = both[np.isfinite(both)]
    if both.size == 0:
        return 0.0, 1.0
    lo, hi = (float(q) for q in np.quantile(both, quantiles))
    if hi <= lo:
        return lo - 0.5, lo + 0.5
    return lo, hi


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure's PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def thumbnail_png(planes: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """Side-by-side grey-level planes (ingested, preprocessed), each 1-99 % windowed."""
    fig = _figure(3 * len(planes), 3)
    for i, (title, plane) in enumerate(planes, start=1):
        ax = fig.add_subplot(1, len(planes), i)
        lo, hi = clipped_range(plane)
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return figure_png(fig)


def drift_png(
    columns: Sequence[tuple[str, np.ndarray, np.ndarray, str]], *, ncols: int = 4
) -> tuple[bytes, dict[str, tuple[float, float]]]:
    """Histograms of features: training set against this run, on clipped ranges.

    Parameters
    ----------
    columns
        ``(name, current, reference, caption)`` per feature.
    ncols
        Panels per row.

    Returns
    -------
    tuple of (bytes, dict)
        The PNG, and each feature's plotted range ``(lo, hi)``.
    """
    n = max(1, len(columns))
    rows = -(-n // ncols)
    fig = _figure(3.2 * min(n, ncols), 2.5 * rows)
    ranges: dict[str, tuple[float, float]] = {}
    for i, (name, cur, ref, caption) in enumerate(columns, start=1):
        ax = fig.add_subplot(rows, min(n, ncols), i)
        cur = np.asarray(cur, dtype=float)
        ref = np.asarray(ref, dtype=float)
        cur, ref = cur[np.isfinite(cur)], ref[np.isfinite(ref)]
        lo, hi = clipped_range(cur, ref)
        ranges[name] = (lo, hi)
        bins = np.linspace(lo, hi, 21)
        if ref.size:
            ax.hist(np.clip(ref, lo, hi), bins=bins, density=True, alpha=0.5,
                    color="tab:blue", label="training set")
        if cur.size:
            ax.hist(np.clip(cur, lo, hi), bins=bins, density=True, alpha=0.5,
                    color="tab:orange", label="this run")
        ax.set_title(name if len(name) <= 34 else name[:32] + "…", fontsize=8)
        ax.set_xlabel(caption, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        if i == 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig), ranges


def calibration_png(
    y_true: np.ndarray, prob: np.ndarray, *, title: str, n_bins: int = 10
) -> bytes:
    """Reliability diagram (:func:`sklearn.calibration.calibration_curve`) over a histogram."""
    from sklearn.calibration import calibration_curve

    frac, mean = calibration_curve(y_true, prob, n_bins=n_bins, strategy="uniform")
    fig = _figure(4, 4.6)
    ax = fig.add_axes((0.15, 0.35, 0.8, 0.55))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot(mean, frac, "o-", lw=2, label="model")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction positive", title=title)
    ax.set_xticklabels([])
    ax.legend(loc="upper left", fontsize=7)
    hx = fig.add_axes((0.15, 0.1, 0.8, 0.2))
    hx.hist(prob, bins=np.linspace(0, 1, n_bins + 1), color="tab:blue", alpha=0.7)
    hx.set(xlim=(0, 1), xlabel="predicted probability", ylabel="samples")
    return figure_png(fig)
