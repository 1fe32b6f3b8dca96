"""Colour features: HSV histograms and moments of RGB images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import stats
from skimage.color import rgb2hsv

from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["hsv_feature_names", "hsv_features"]

_CHANNELS = ("h", "s", "v")


def hsv_feature_names(*, bins: int = 8) -> list[str]:
    """Names: per channel ``bins`` histogram fractions, then mean, std and skewness."""
    names = []
    for c in _CHANNELS:
        names += [f"hsv_{c}_bin{k}" for k in range(bins)]
        names += [f"hsv_{c}_mean", f"hsv_{c}_std", f"hsv_{c}_skewness"]
    return names


def hsv_features(
    rgb: np.ndarray, mask: np.ndarray | None = None, *, bins: int = 8
) -> dict[str, float]:
    """HSV histograms (``bins`` equal bins on [0, 1]) and moments inside the ROI.

    Parameters
    ----------
    rgb
        Colour image with the channel axis last (``..., 3``), any numeric range: integers
        are scaled by their dtype maximum, floats are taken as [0, 1].
    mask
        ROI over the spatial axes; the whole image when ``None``.
    bins
        Histogram bins per channel.

    Returns
    -------
    dict
        Names from :func:`hsv_feature_names` → value.
    """
    a = np.asarray(rgb)
    if a.shape[-1] != 3:
        raise ValueError(f"hsv_features needs RGB with the channel axis last, got shape {a.shape}")
    hsv = rgb2hsv(a.reshape(-1, 1, 3)).reshape(-1, 3)  # skimage scales integer dtypes
    if mask is not None:
        hsv = hsv[np.asarray(mask, bool).ravel()]
    out: dict[str, float] = {}
    for k, c in enumerate(_CHANNELS):
        x = hsv[:, k]
        if x.size:
            h, _ = np.histogram(x, bins=bins, range=(0.0, 1.0))
            h = h / x.size
            sd = float(x.std())
            sk = float(stats.skew(x)) if sd > 0 else 0.0
            mean = float(x.mean())
        else:
            h, mean, sd, sk = np.full(bins, np.nan), np.nan, np.nan, np.nan
        out.update({f"hsv_{c}_bin{b}": float(h[b]) for b in range(bins)})
        out.update({f"hsv_{c}_mean": mean, f"hsv_{c}_std": sd, f"hsv_{c}_skewness": sk})
    return out


def _names(config: FeatureConfig) -> list[str]:
    return hsv_feature_names(bins=config.hsv_bins)


def _compute(sample: Sample) -> dict[str, float]:
    if not sample.is_rgb:  # NaN for grey images
        return {}
    return hsv_features(sample.image[..., :3], sample.mask, bins=sample.config.hsv_bins)


FAMILY = register_family(Family("colour", _names, _compute))
