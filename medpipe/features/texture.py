"""Filter-based texture: local binary pattern histograms and Laplacian variance (sharpness).

Both work slice by slice on the ``y, x`` planes of a ``z, y, x`` array and pool the
per-pixel responses inside the ROI over all slices.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.feature import local_binary_pattern

from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["lbp_feature_names", "lbp_features", "laplacian_variance"]


def lbp_feature_names(*, points: int = 8) -> list[str]:
    """Names of the ``points + 2`` uniform-LBP histogram bins."""
    return [f"lbp_p{points}_bin{k}" for k in range(points + 2)]


def lbp_features(
    image: np.ndarray, mask: np.ndarray | None = None, *, points: int = 8, radius: float = 1.0
) -> dict[str, float]:
    """Normalised histogram of rotation-invariant uniform LBP codes inside the ROI.

    Parameters
    ----------
    image
        Intensities, ``z, y, x`` (or ``y, x``).
    mask
        ROI of the same shape; the whole image when ``None``.
    points, radius
        LBP neighbourhood (``skimage.feature.local_binary_pattern`` with
        ``method="uniform"``, which gives codes ``0..points + 1``).

    Returns
    -------
    dict
        ``lbp_p<points>_bin<k> -> fraction`` of ROI pixels with code ``k``.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[None]
    m = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool).reshape(img.shape)
    hist = np.zeros(points + 2, dtype=np.float64)
    for z in range(img.shape[0]):
        if not m[z].any():
            continue
        with warnings.catch_warnings():
            # skimage warns about float input in general; intensities here are float by design
            warnings.filterwarnings("ignore", "Applying `local_binary_pattern`", UserWarning)
            codes = local_binary_pattern(img[z], points, radius, method="uniform")
        hist += np.bincount(codes[m[z]].astype(np.int64), minlength=points + 2)[: points + 2]
    total = hist.sum()
    hist = hist / total if total else np.full_like(hist, np.nan)
    return dict(zip(lbp_feature_names(points=points), hist.tolist(), strict=True))


def laplacian_variance(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the in-plane Laplacian inside the ROI, a standard sharpness measure.

    Parameters
    ----------
    image
        Intensities, ``z, y, x`` (or ``y, x``).
    mask
        ROI of the same shape; the whole image when ``None``.

    Returns
    -------
    float
        ``var(laplace(slice))`` over the ROI pixels of every slice (``scipy.ndimage.laplace``,
        reflect mode), NaN for an empty ROI.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[None]
    m = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool).reshape(img.shape)
    resp = [ndimage.laplace(img[z])[m[z]] for z in range(img.shape[0]) if m[z].any()]
    if not resp:
        return float("nan")
    return float(np.var(np.concatenate(resp)))


def _names(config: FeatureConfig) -> list[str]:
    return [*lbp_feature_names(points=config.lbp_points), "laplacian_variance"]


def _compute(sample: Sample) -> dict[str, float]:
    cfg = sample.config
    out = lbp_features(sample.grey, sample.mask, points=cfg.lbp_points, radius=cfg.lbp_radius)
    out["laplacian_variance"] = laplacian_variance(sample.grey, sample.mask)
    return out


FAMILY = register_family(Family("texture", _names, _compute))
