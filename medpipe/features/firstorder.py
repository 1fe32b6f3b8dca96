"""First-order features: IBSI intensity statistics and intensity-histogram families.

:func:`statistics_features` works on the raw ROI intensities (IBSI 3.3) and names its
features ``firstorder_*``; :func:`histogram_features` works on discretised grey levels
(IBSI 3.4) and names them ``ih_*``.  Percentiles use numpy's default (linear)
interpolation.  Variance, skewness and kurtosis are the biased (population) moments,
kurtosis is the excess kurtosis, as IBSI defines them.

Relation to pyradiomics's ``firstorder`` class (checked against its published baseline in
``tests/features/test_pyradiomics_baseline.py`` and by ``bench/features.py``):

* Mean, Variance, Skewness, Median, Minimum, Maximum, 10/90Percentile,
  InterquartileRange, Range, MeanAbsoluteDeviation and RobustMeanAbsoluteDeviation are
  the same definitions as ``firstorder_*`` here; pyradiomics's Entropy and Uniformity are
  computed on binned intensities and equal ``ih_entropy`` / ``ih_uniformity``.
* Kurtosis: pyradiomics reports the plain fourth standardised moment, so
  ``Kurtosis = firstorder_kurtosis + 3``.
* Energy, RootMeanSquared and TotalEnergy: pyradiomics adds ``voxelArrayShift`` ``c``
  to every intensity first (0 in its extractor's default, 2000 in its baseline):
  ``Energy = Σ(x + c)² = firstorder_energy + 2cNμ + Nc²``, ``RMS = sqrt(Energy / N)``,
  and ``TotalEnergy = Energy × voxel volume``.
* Fixed bin width: pyradiomics's bin edges are multiples of the width
  (``floor(x/w) - floor(min/w) + 1``); IBSI's start at the ROI minimum.  Passing
  ``min_value = floor(min/w)·w`` to :func:`~medpipe.features.discretise.discretise_fbs`
  reproduces pyradiomics's bins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "STATISTICS_NAMES",
    "HISTOGRAM_NAMES",
    "statistics_features",
    "histogram_features",
]

_COMMON = (
    "mean",
    "variance",
    "skewness",
    "kurtosis",
    "median",
    "minimum",
    "p10",
    "p90",
    "maximum",
    "iqr",
    "range",
    "mad",
    "robust_mad",
    "median_ad",
    "cov",
    "qcod",
)
STATISTICS_NAMES: tuple[str, ...] = tuple(f"firstorder_{n}" for n in (*_COMMON, "energy", "rms"))
HISTOGRAM_NAMES: tuple[str, ...] = tuple(
    f"ih_{n}"
    for n in (
        *_COMMON,
        "mode",
        "entropy",
        "uniformity",
        "max_gradient",
        "max_gradient_level",
        "min_gradient",
        "min_gradient_level",
    )
)


def _moments(x: np.ndarray) -> dict[str, float]:
    """The statistics shared by both families, on a 1-D float64 array."""
    if x.size == 0:
        return dict.fromkeys(_COMMON, np.nan)
    mean = float(x.mean())
    dev = x - mean
    dev2 = dev * dev  # explicit products: much faster than dev**3, dev**4
    var = float(np.mean(dev2))
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = float(np.mean(dev2 * dev) / var**1.5) if var > 0 else 0.0
        kurt = float(np.mean(dev2 * dev2) / var**2 - 3.0) if var > 0 else 0.0
    p10, p25, med, p75, p90 = (float(v) for v in np.percentile(x, [10, 25, 50, 75, 90]))
    robust = x[(x >= p10) & (x <= p90)]
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = float(np.sqrt(var) / mean) if mean != 0 else np.nan
        qcod = float((p75 - p25) / (p75 + p25)) if (p75 + p25) != 0 else np.nan
    return {
        "mean": mean,
        "variance": var,
        "skewness": skew,
        "kurtosis": kurt,
        "median": med,
        "minimum": float(x.min()),
        "p10": p10,
        "p90": p90,
        "maximum": float(x.max()),
        "iqr": p75 - p25,
        "range": float(x.max() - x.min()),
        "mad": float(np.mean(np.abs(dev))),
        "robust_mad": float(np.mean(np.abs(robust - robust.mean()))),
        "median_ad": float(np.mean(np.abs(x - med))),
        "cov": cov,
        "qcod": qcod,
    }


def statistics_features(values: np.ndarray) -> dict[str, float]:
    """IBSI intensity-based statistical features of the ROI intensities.

    Parameters
    ----------
    values
        Intensities of the voxels inside the ROI (any shape; flattened).

    Returns
    -------
    dict
        ``firstorder_<name> -> value`` for every name in :data:`STATISTICS_NAMES`.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    out = _moments(x)
    out["energy"] = float(np.sum(x**2)) if x.size else np.nan
    out["rms"] = float(np.sqrt(np.mean(x**2))) if x.size else np.nan
    return {f"firstorder_{k}": v for k, v in out.items()}


def histogram_features(levels: np.ndarray, *, n_levels: int | None = None) -> dict[str, float]:
    """IBSI intensity-histogram features of discretised grey levels.

    Parameters
    ----------
    levels
        Grey levels (integers >= 1) of the ROI voxels.
    n_levels
        Number of bins ``N_g`` of the histogram; defaults to the highest level present.

    Returns
    -------
    dict
        ``ih_<name> -> value`` for every name in :data:`HISTOGRAM_NAMES`.
    """
    x = np.asarray(levels).ravel().astype(np.int64)
    out = _moments(x.astype(np.float64))
    if x.size == 0:
        out.update(
            dict.fromkeys(
                (
                    "mode",
                    "entropy",
                    "uniformity",
                    "max_gradient",
                    "max_gradient_level",
                    "min_gradient",
                    "min_gradient_level",
                ),
                np.nan,
            )
        )
        return {f"ih_{k}": v for k, v in out.items()}
    ng = int(n_levels) if n_levels is not None else int(x.max())
    counts = np.bincount(x - 1, minlength=ng)[:ng].astype(np.float64)
    grey = np.arange(1, ng + 1, dtype=np.float64)
    p = counts / counts.sum()
    nz = p > 0
    # mode: the most frequent level; ties go to the level closest to the mean
    modes = grey[counts == counts.max()]
    mode = float(modes[np.argmin(np.abs(modes - out["mean"]))])
    if ng > 1:
        grad = np.gradient(counts)  # central differences inside, one-sided at the ends
    else:
        grad = np.zeros(1)
    out.update(
        {
            "mode": mode,
            "entropy": float(-np.sum(p[nz] * np.log2(p[nz]))),
            "uniformity": float(np.sum(p**2)),
            "max_gradient": float(grad.max()),
            "max_gradient_level": float(grey[np.argmax(grad)]),
            "min_gradient": float(grad.min()),
            "min_gradient_level": float(grey[np.argmin(grad)]),
        }
    )
    return {f"ih_{k}": v for k, v in out.items()}


def _statistics(sample: Sample) -> dict[str, float]:
    return statistics_features(sample.roi_values)


def _histogram(sample: Sample) -> dict[str, float]:
    return histogram_features(sample.levels[sample.mask_roi], n_levels=sample.n_levels)


def _statistics_names(config: FeatureConfig) -> list[str]:
    return list(STATISTICS_NAMES)


def _histogram_names(config: FeatureConfig) -> list[str]:
    return list(HISTOGRAM_NAMES)


FAMILY = register_family(Family("firstorder", _statistics_names, _statistics))
HISTOGRAM_FAMILY = register_family(Family("histogram", _histogram_names, _histogram))
