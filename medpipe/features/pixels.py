"""Appearance features for small 2D images: a resampled pixel vector and HOG.

For thumbnails such as MedMNIST's 28×28 images the pixels themselves are informative
features (logistic regression on raw pixels is the usual baseline), and a histogram of
oriented gradients summarises local edge structure.  Both work on one 2D plane: the
middle slice of a volume, resampled to ``size × size`` so that every sample has the
same feature names whatever its size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from skimage.feature import hog
from skimage.transform import resize

from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "pixel_features",
    "pixel_feature_names",
    "hog_features",
    "hog_feature_names",
    "HOG_ORIENTATIONS",
]

#: Orientation bins of :func:`hog_features`.
HOG_ORIENTATIONS = 9


def _plane(image: np.ndarray, size: int) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[img.shape[0] // 2]
    if img.ndim != 2:
        raise ValueError(f"expected a 2D image or a z, y, x volume, got shape {img.shape}")
    if img.shape != (size, size):
        img = resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return img


def pixel_feature_names(*, size: int) -> list[str]:
    """``pixel_<row>_<col>`` for a ``size × size`` grid."""
    return [f"pixel_{r:03d}_{c:03d}" for r in range(size) for c in range(size)]


def pixel_features(image: np.ndarray, *, size: int) -> dict[str, float]:
    """Intensities of the (middle slice of the) image resampled to ``size × size``.

    Resampling is linear with anti-aliasing (:func:`skimage.transform.resize`,
    ``preserve_range=True``); an image already of that size is returned as it is.
    """
    plane = _plane(image, size)
    return dict(zip(pixel_feature_names(size=size), plane.ravel().tolist(), strict=True))


def _hog_cell(size: int) -> int:
    return max(size // 4, 1)


def hog_feature_names(*, size: int) -> list[str]:
    """``hog_<i>`` for the block-normalised HOG vector of a ``size × size`` plane."""
    cells = size // _hog_cell(size)
    n = max(cells - 1, 0) ** 2 * 4 * HOG_ORIENTATIONS
    return [f"hog_{i:04d}" for i in range(n)]


def hog_features(image: np.ndarray, *, size: int) -> dict[str, float]:
    """Histogram of oriented gradients (:func:`skimage.feature.hog`) of the plane.

    ``HOG_ORIENTATIONS`` bins, cells of ``size // 4`` pixels, 2×2-cell blocks with
    L2-Hys normalisation, on the plane resampled to ``size × size``.
    """
    plane = _plane(image, size)
    cell = _hog_cell(size)
    vec = hog(
        plane,
        orientations=HOG_ORIENTATIONS,
        pixels_per_cell=(cell, cell),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=True,
    )
    return dict(zip(hog_feature_names(size=size), vec.tolist(), strict=True))


def _pixel_names(config: FeatureConfig) -> list[str]:
    return pixel_feature_names(size=config.pixels_size)


def _pixels(sample: Sample) -> dict[str, float]:
    return pixel_features(sample.grey_box, size=sample.config.pixels_size)


def _hog_names(config: FeatureConfig) -> list[str]:
    return hog_feature_names(size=config.pixels_size)


def _hog(sample: Sample) -> dict[str, float]:
    return hog_features(sample.grey_box, size=sample.config.pixels_size)


FAMILY = register_family(Family("pixels", _pixel_names, _pixels))
HOG_FAMILY = register_family(Family("hog", _hog_names, _hog))
