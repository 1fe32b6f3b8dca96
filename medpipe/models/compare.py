"""Comparing two models' AUCs on the same samples: DeLong's test and a paired bootstrap.

DeLong, DeLong & Clarke-Pearson (1988), *Biometrics* 44:837-845, with the midrank
computation of Sun & Xu (2014), *IEEE Signal Processing Letters* 21:1389-1393.  The
two AUCs are correlated (same samples), and the test uses their covariance.  DeLong
treats samples as independent; with several images per patient the paired *cluster*
bootstrap (``groups``) is the estimate that respects the patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score

from medpipe.errors import ModelError
from medpipe.models.metrics import bootstrap_indices

__all__ = ["delong_test", "paired_bootstrap", "compare_aucs"]


def _components(y: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components V10 (positives) and V01 (negatives)."""
    pos, neg = p[y == 1], p[y == 0]
    m, n = pos.size, neg.size
    r_all = rankdata(np.concatenate([pos, neg]))  # midranks: ties count 1/2
    v10 = (r_all[:m] - rankdata(pos)) / n
    v01 = 1.0 - (r_all[m:] - rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_test(
    y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, *, level: float = 0.95
) -> dict[str, float]:
    """DeLong's test of AUC(A) = AUC(B) for two scores of the same samples.

    Parameters
    ----------
    y_true
        0/1 labels.
    prob_a, prob_b
        The two models' scores of class 1 for the same samples.
    level
        Confidence level of the interval of the difference.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``diff`` (A - B), ``se``, ``ci_low``, ``ci_high``
        (normal approximation), ``z`` and the two-sided ``p_value``.

    Raises
    ------
    ModelError
        A class is absent, or the shapes differ.
    """
    y = np.asarray(y_true).astype(int)
    a, b = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    if not (a.shape == b.shape == y.shape):
        raise ModelError(f"scores of different shapes {a.shape}, {b.shape}, labels {y.shape}")
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if m < 2 or n < 2:
        raise ModelError(f"DeLong's test needs 2 samples of each class; have {m} positive, "
                         f"{n} negative")
    auc_a, v10a, v01a = _components(y, a)
    auc_b, v10b, v01b = _components(y, b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    contrast = np.array([1.0, -1.0])
    var = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    diff = auc_a - auc_b
    se = float(np.sqrt(max(var, 0.0)))
    zq = float(norm.ppf(0.5 + level / 2))
    if se == 0.0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    return {"auc_a": auc_a, "auc_b": auc_b, "diff": diff, "se": se,
            "ci_low": diff - zq * se, "ci_high": diff + zq * se, "z": float(z), "p_value": p}


def paired_bootstrap(
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Paired bootstrap of AUC(A) - AUC(B): both models on the same resamples.

    With ``groups`` the resamples draw patients (cluster bootstrap).  The p-value is
    the two-sided bootstrap p-value of a zero difference (twice the smaller share of
    resampled differences on either side of 0).

    Returns
    -------
    dict
        ``diff``, ``ci_low``, ``ci_high``, ``p_value``, ``n_boot`` (resamples with
        both classes).
    """
    y = np.asarray(y_true).astype(int)
    a, b = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    diffs = []
    for idx in bootstrap_indices(y.size, n_boot=n_boot, seed=seed, groups=groups):
        yy = y[idx]
        if yy.min() == yy.max():
            continue
        diffs.append(roc_auc_score(yy, a[idx]) - roc_auc_score(yy, b[idx]))
    d = np.asarray(diffs)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(d, [alpha, 1 - alpha]) if d.size else (np.nan, np.nan)
    p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())) if d.size else np.nan
    return {"diff": float(roc_auc_score(y, a) - roc_auc_score(y, b)), "ci_low": float(lo),
            "ci_high": float(hi), "p_value": float(p), "n_boot": int(d.size)}


def compare_aucs(
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """DeLong's test and the paired (cluster) bootstrap of the AUC difference A - B.

    Returns
    -------
    dict
        ``delong`` (:func:`delong_test`), ``bootstrap`` (:func:`paired_bootstrap`,
        patient-level when ``groups`` is given), ``n``, ``n_positive``, ``n_patients``.
    """
    y = np.asarray(y_true).astype(int)
    return {
        "delong": delong_test(y, prob_a, prob_b),
        "bootstrap": {**paired_bootstrap(y, prob_a, prob_b, n_boot=n_boot, seed=seed,
                                         groups=groups),
                      "resampled": "patients" if groups is not None else "samples"},
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "n_patients": int(len(np.unique(groups))) if groups is not None else int(y.size),
    }
