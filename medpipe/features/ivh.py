"""Intensity-volume histogram (IVH) features, IBSI 1 section 3.5 (``P88C``).

The IVH relates a discretised intensity ``i`` of the range ``G`` to ``ν_i``, the fraction
of the ROI volume with intensity at least ``i``; ``γ_i = (i − min G) / (max G − min G)``
is its intensity fraction.  Every intensity of ``G`` is evaluated, also those absent from
the ROI (as IBSI does for the digital phantom, whose levels 2 and 5 are absent).

Discretisation (IBSI's three cases), from ``ivh_bin_width`` / ``ivh_bin_count`` when
either is set, otherwise from the config's own ``bin_width`` / ``bin_count``:

* neither (discrete calibrated intensities, e.g. CT in HU, or the digital phantom's grey
  levels): the intensities rounded to integers, ``w_d = 1``,
  ``G = [min_value or min(X), max(X)]`` (IBSI takes a re-segmentation range as ``G``;
  medpipe has no upper bound setting, and IBSI's CT phantom values for configuration A,
  re-segmented to [-500, 400] HU, are centred on ``max(X) = 377``; the test checks them);
* fixed bin size ``w_b`` (continuous calibrated intensities, e.g. PET in SUV; IBSI
  suggests 0.1 SUV): bin numbers from ``min_value`` (or the ROI minimum), reported as
  bin centres ``X_min + (i − 0.5) w_b``;
* fixed bin number ``N_g`` (arbitrary units, e.g. MRI; IBSI suggests 1000 bins): the bin
  numbers, ``G = [1, N_g]``.

Features (``ivh_<name>``): ``v10``/``v90`` (``BC2M``, the largest ``ν`` with
``γ ≥ 10 %``/``90 %``), ``i10``/``i90`` (``GBPN``, the smallest intensity present in at
most 10 %/90 % of the volume; the intensity after ``max G`` when even the top intensity
fills more), ``v10_minus_v90`` (``DDTU``), ``i10_minus_i90`` (``CNV2``) and ``auc``
(``9CMM``, trapezoidal area under ``ν(γ)``, 0 for a single intensity; IBSI has no
reference value for it).  Fractions are compared in integer arithmetic, so ``γ = 10 %``
exactly counts as "at least 10 %".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medpipe.errors import ConfigError
from medpipe.features.discretise import discretise_fbn, discretise_fbs
from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["FEATURES", "MAX_IVH_LEVELS", "ivh_curve", "ivh_features", "ivh_feature_names"]

FEATURES: tuple[str, ...] = (
    "v10",
    "v90",
    "i10",
    "i90",
    "v10_minus_v90",
    "i10_minus_i90",
    "auc",
)

#: The most discretised intensities an IVH may span (a guard against a tiny bin width).
MAX_IVH_LEVELS = 10_000_000


def _discretise(
    values: np.ndarray,
    bin_width: float | None,
    bin_count: int | None,
    min_value: float | None,
) -> tuple[np.ndarray, int, int, float, float]:
    """Integer intensities, ``min G``, ``max G`` and the map ``level -> a + b * level``."""
    if bin_width is not None and bin_count is not None:
        raise ConfigError("IVH: give bin_width (fixed bin size) or bin_count, not both")
    if bin_count is not None:
        return discretise_fbn(values, bin_count=bin_count).astype(np.int64), 1, bin_count, 0.0, 1.0
    if bin_width is not None:
        d = discretise_fbs(values, bin_width=bin_width, min_value=min_value).astype(np.int64)
        x_min = float(values.min()) if min_value is None else float(min_value)
        return d, 1, int(d.max()), x_min - 0.5 * bin_width, float(bin_width)
    d = np.rint(values).astype(np.int64)
    lo = int(d.min()) if min_value is None else min(int(np.ceil(min_value)), int(d.min()))
    return d, lo, int(d.max()), 0.0, 1.0


def ivh_curve(levels: np.ndarray, *, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The IVH of integer intensities ``levels`` over ``G = [lo, hi]``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``counts_ge[k]``, the number of voxels with intensity ``>= lo + k``, for
        ``k = 0 .. hi - lo`` (``ν = counts_ge / N_v``), and the intensities ``lo .. hi``.
    """
    n = hi - lo + 1
    if n > MAX_IVH_LEVELS:
        raise ConfigError(
            f"IVH: the intensity range spans {n} discretised intensities (more than "
            f"{MAX_IVH_LEVELS}); use a coarser ivh_bin_width or ivh_bin_count"
        )
    counts = np.bincount(np.asarray(levels, dtype=np.int64) - lo, minlength=n)
    counts_ge = counts[::-1].cumsum()[::-1]
    return counts_ge, np.arange(lo, hi + 1, dtype=np.int64)


def ivh_features(
    values: np.ndarray,
    *,
    bin_width: float | None = None,
    bin_count: int | None = None,
    min_value: float | None = None,
) -> dict[str, float]:
    """IBSI intensity-volume histogram features of the ROI intensities ``values``.

    Parameters
    ----------
    values
        Intensities of the ROI voxels (any shape).
    bin_width, bin_count, min_value
        The IVH discretisation (see the module docstring); neither ``bin_width`` nor
        ``bin_count``: the intensities rounded to integers.

    Returns
    -------
    dict
        ``ivh_<feature> -> value`` (all NaN for an empty ROI).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return dict.fromkeys(ivh_feature_names(), float("nan"))
    d, lo, hi, a, b = _discretise(v, bin_width, bin_count, min_value)
    counts_ge, i = ivh_curve(d, lo=lo, hi=hi)
    nv = int(d.size)
    span = hi - lo  # γ_i = (i - lo) / span

    def volume_at(pct: int) -> float:
        # largest ν with γ >= pct %: ν falls with i, so the first i with γ >= pct %
        k = int(np.argmax((i - lo) * 100 >= pct * span))
        return float(counts_ge[k] / nv)

    def intensity_at(pct: int) -> float:
        # smallest i with ν <= pct % (the intensity after max G when there is none)
        ok = counts_ge * 100 <= pct * nv
        level = int(i[np.argmax(ok)]) if ok.any() else hi + 1
        return a + b * level

    nu = counts_ge / nv
    if span > 0:
        gamma = (i - lo) / span
        auc = float(np.sum((nu[1:] + nu[:-1]) * np.diff(gamma)) / 2.0)
    else:
        auc = 0.0
    out = {
        "v10": volume_at(10),
        "v90": volume_at(90),
        "i10": intensity_at(10),
        "i90": intensity_at(90),
        "auc": auc,
    }
    out["v10_minus_v90"] = out["v10"] - out["v90"]
    out["i10_minus_i90"] = out["i10"] - out["i90"]
    return {f"ivh_{f}": out[f] for f in FEATURES}


def ivh_feature_names() -> list[str]:
    """Feature names ``ivh_<feature>`` in output order."""
    return [f"ivh_{f}" for f in FEATURES]


def _names(config: FeatureConfig) -> list[str]:
    return ivh_feature_names()


def _compute(sample: Sample) -> dict[str, float]:
    cfg = sample.config
    if cfg.ivh_discrete:
        width = count = None
    elif cfg.ivh_bin_width is not None or cfg.ivh_bin_count is not None:
        width, count = cfg.ivh_bin_width, cfg.ivh_bin_count
    else:
        width, count = cfg.bin_width, cfg.bin_count
    return ivh_features(
        sample.roi_values, bin_width=width, bin_count=count, min_value=cfg.discretisation_min
    )


FAMILY = register_family(Family("ivh", _names, _compute))
