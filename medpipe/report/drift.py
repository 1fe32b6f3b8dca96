"""Feature drift: this run's new samples against the training set, feature by feature.

The flag statistic is the population stability index (:func:`psi`), computed on the
reference's decile bins; the two-sample Kolmogorov-Smirnov statistic and p-value
(:func:`scipy.stats.ks_2samp`) are shown next to it.  A feature is *flagged* when its
PSI is at least the threshold (:data:`DEFAULT_PSI_THRESHOLD`, the usual "major shift"
convention: below 0.1 stable, 0.1-0.2 moderate, 0.2 and above a shift worth a look).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_PSI_THRESHOLD",
    "PSI_BINS",
    "PSI_EPS",
    "FeatureDrift",
    "psi",
    "psi_edges",
    "drift_table",
]

#: Default PSI at or above which a feature is flagged.
DEFAULT_PSI_THRESHOLD = 0.2
#: Reference-quantile bins of the PSI.
PSI_BINS = 10
#: Floor of a bin's share (an empty bin would make the PSI infinite).
PSI_EPS = 1e-4


def _finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def psi_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Interior bin edges of the PSI: the reference's ``bins``-quantiles, deduplicated.

    A value ``x`` falls in bin ``i`` when ``edges[i-1] <= x < edges[i]`` (the first and
    last bins are open-ended).
    """
    ref = _finite(reference)
    if ref.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    return counts / values.size


def psi(
    reference: np.ndarray, current: np.ndarray, *, bins: int = PSI_BINS, eps: float = PSI_EPS
) -> float:
    """Population stability index of ``current`` against ``reference``.

    ``PSI = sum_i (q_i - p_i) ln(q_i / p_i)`` over the bins of :func:`psi_edges`, with
    ``p`` the reference's and ``q`` the current share of each bin (floored at ``eps``).
    Non-finite values are left out.

    Parameters
    ----------
    reference, current
        Values of one feature.
    bins
        Number of reference-quantile bins.
    eps
        Floor of a share.

    Returns
    -------
    float
        The PSI (0 for identical distributions); NaN with fewer than two finite
        reference values or no finite current value.
    """
    ref, cur = _finite(reference), _finite(current)
    if ref.size < 2 or cur.size == 0:
        return float("nan")
    edges = psi_edges(ref, bins)
    p = np.maximum(_shares(ref, edges), eps)
    q = np.maximum(_shares(cur, edges), eps)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature.

    Attributes
    ----------
    feature
        The feature's name.
    psi
        Its PSI (:func:`psi`), NaN where undefined.
    ks, ks_pvalue
        The two-sample KS statistic and p-value (:func:`scipy.stats.ks_2samp`).
    n_current, n_reference
        Finite values on each side.
    flagged
        ``psi >= threshold``.
    """

    feature: str
    psi: float
    ks: float
    ks_pvalue: float
    n_current: int
    n_reference: int
    flagged: bool


def drift_table(
    current: np.ndarray,
    reference: np.ndarray,
    names: Sequence[str],
    *,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    bins: int = PSI_BINS,
) -> list[FeatureDrift]:
    """Drift of every feature, the largest PSI first (NaN last).

    Parameters
    ----------
    current, reference
        ``(samples, features)`` arrays of this run's samples and of the training set.
    names
        The feature names (columns).
    threshold
        PSI at or above which a feature is flagged.
    bins
        PSI bins.

    Returns
    -------
    list of FeatureDrift
    """
    from scipy.stats import ks_2samp

    cur = np.asarray(current, dtype=float).reshape(-1, len(names))
    ref = np.asarray(reference, dtype=float).reshape(-1, len(names))
    rows = []
    for j, name in enumerate(names):
        a, b = _finite(cur[:, j]), _finite(ref[:, j])
        value = psi(b, a, bins=bins)
        if a.size and b.size:
            res = ks_2samp(a, b)
            ks, p = float(res.statistic), float(res.pvalue)
        else:
            ks = p = float("nan")
        rows.append(
            FeatureDrift(
                feature=str(name),
                psi=value,
                ks=ks,
                ks_pvalue=p,
                n_current=int(a.size),
                n_reference=int(b.size),
                flagged=bool(np.isfinite(value) and value >= threshold),
            )
        )
    return sorted(rows, key=lambda r: (not np.isfinite(r.psi), -np.nan_to_num(r.psi)))
