"""IBSI re-segmentation (IBSI 1 section 2.5): the intensity mask from the ROI.

Re-segmentation keeps the *morphological* mask (the ROI as drawn, after interpolation)
and narrows the *intensity* mask: :func:`resegment_range` keeps the voxels inside a
closed range ``[a, b]`` (e.g. ``[-500, 400]`` HU to drop air and bone from a lung
tumour), :func:`filter_outliers` those within ``μ ± kσ`` of the ROI's intensities
(IBSI's 3σ).  :func:`medpipe.features.ibsi_processing.process_roi` applies the range
first, then the outlier filter to what remains.
"""

from __future__ import annotations

import numpy as np

from medpipe.errors import ConfigError

__all__ = ["filter_outliers", "resegment_range"]


def resegment_range(
    image: np.ndarray, mask: np.ndarray, *, low: float | None = None, high: float | None = None
) -> np.ndarray:
    """IBSI range re-segmentation: the ROI voxels with ``low <= X <= high``.

    Parameters
    ----------
    image
        Intensities.
    mask
        Boolean ROI of the same shape.
    low, high
        Closed bounds; ``None`` leaves that side open.

    Returns
    -------
    numpy.ndarray
        The re-segmented (intensity) mask.
    """
    img = np.asarray(image)
    out = np.asarray(mask, dtype=bool).copy()
    if img.shape != out.shape:
        raise ConfigError(f"mask shape {out.shape} differs from image shape {img.shape}")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"re-segmentation range [{low}, {high}] is empty")
    if low is not None:
        out &= img >= low
    if high is not None:
        out &= img <= high
    return out


def filter_outliers(image: np.ndarray, mask: np.ndarray, *, n_sigma: float = 3.0) -> np.ndarray:
    """IBSI intensity outlier filtering: keep the ROI voxels within ``μ ± n_sigma σ``.

    ``μ`` and ``σ`` are the mean and (population) standard deviation of the intensities
    in ``mask``; the bounds are inclusive.

    Parameters
    ----------
    image
        Intensities.
    mask
        Boolean ROI of the same shape.
    n_sigma
        Half-width of the kept range in standard deviations (IBSI: 3).

    Returns
    -------
    numpy.ndarray
        The filtered (intensity) mask.
    """
    if not n_sigma > 0:
        raise ConfigError(f"n_sigma must be > 0, got {n_sigma}")
    m = np.asarray(mask, dtype=bool)
    img = np.asarray(image, dtype=np.float64)
    if img.shape != m.shape:
        raise ConfigError(f"mask shape {m.shape} differs from image shape {img.shape}")
    if not m.any():
        return m.copy()
    x = img[m]
    mu, sigma = float(x.mean()), float(x.std())
    return m & (img >= mu - n_sigma * sigma) & (img <= mu + n_sigma * sigma)
