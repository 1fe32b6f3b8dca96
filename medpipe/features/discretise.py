"""Grey-level discretisation (IBSI 1, section 2.7).

Both functions take the intensities of the voxels inside a region of interest and
return integer grey levels starting at 1.  Voxels outside the ROI are the caller's
business: :func:`discretise_image` sets them to 0, which every texture module in
:mod:`medpipe.features` reads as "not in the ROI".
"""

from __future__ import annotations

import numpy as np

from medpipe.errors import ConfigError

__all__ = ["discretise_fbn", "discretise_fbs", "discretise_image", "n_levels"]


def discretise_fbn(values: np.ndarray, *, bin_count: int) -> np.ndarray:
    """Fixed bin number discretisation (IBSI ``K15C``).

    ``X_d = floor(N_g (X - X_min) / (X_max - X_min)) + 1``, and ``X_d = N_g`` where
    ``X = X_max``.

    Parameters
    ----------
    values
        Intensities of the ROI voxels (any shape).
    bin_count
        Number of bins ``N_g`` (>= 1).

    Returns
    -------
    numpy.ndarray
        ``int32`` grey levels in ``1..bin_count`` with the shape of ``values``.
    """
    if bin_count < 1:
        raise ConfigError(f"bin_count must be >= 1, got {bin_count}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.zeros(v.shape, dtype=np.int32)
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return np.ones(v.shape, dtype=np.int32)
    out = np.floor(bin_count * (v - lo) / (hi - lo)).astype(np.int32) + 1
    return np.minimum(out, bin_count)


def discretise_fbs(
    values: np.ndarray, *, bin_width: float, min_value: float | None = None
) -> np.ndarray:
    """Fixed bin size discretisation (IBSI ``Q3RU``).

    ``X_d = floor((X - X_min) / w_b) + 1`` where ``X_min`` is the lower bound of the
    re-segmentation range (``min_value``) or, when that is not given, the minimum
    intensity in the ROI.

    Parameters
    ----------
    values
        Intensities of the ROI voxels (any shape).
    bin_width
        Bin width ``w_b`` in intensity units (> 0).
    min_value
        Lower bound ``X_min``; values below it are clipped into bin 1.

    Returns
    -------
    numpy.ndarray
        ``int32`` grey levels starting at 1, with the shape of ``values``.
    """
    if not bin_width > 0:
        raise ConfigError(f"bin_width must be > 0, got {bin_width}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.zeros(v.shape, dtype=np.int32)
    lo = float(v.min()) if min_value is None else float(min_value)
    out = np.floor((v - lo) / bin_width).astype(np.int64) + 1
    return np.maximum(out, 1).astype(np.int32)


def discretise_image(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    bin_width: float | None = None,
    bin_count: int | None = None,
    min_value: float | None = None,
) -> np.ndarray:
    """Discretise the ROI of ``image``; voxels outside ``mask`` become 0.

    Exactly one of ``bin_width`` (FBS) and ``bin_count`` (FBN) is given; with neither,
    the intensities are taken as grey levels already (rounded to integers), which is
    what IBSI prescribes for its digital phantom.

    Parameters
    ----------
    image
        Intensities, any dimensionality.
    mask
        Boolean ROI of the same shape.
    bin_width, bin_count, min_value
        See :func:`discretise_fbs` and :func:`discretise_fbn`.

    Returns
    -------
    numpy.ndarray
        ``int32`` grey levels, 0 outside the ROI.
    """
    if bin_width is not None and bin_count is not None:
        raise ConfigError(
            "give bin_width (fixed bin size) or bin_count (fixed bin number), not both"
        )
    mask = np.asarray(mask, dtype=bool)
    vals = np.asarray(image)[mask]
    if bin_width is not None:
        d = discretise_fbs(vals, bin_width=bin_width, min_value=min_value)
    elif bin_count is not None:
        d = discretise_fbn(vals, bin_count=bin_count)
    else:
        d = np.rint(vals).astype(np.int32)
        if d.size and d.min() < 1:
            raise ConfigError(
                "without bin_width/bin_count the ROI intensities must already be grey levels >= 1"
            )
    out = np.zeros(mask.shape, dtype=np.int32)
    out[mask] = d
    return out


def n_levels(levels: np.ndarray, *, bin_count: int | None = None) -> int:
    """Number of grey levels ``N_g``: ``bin_count`` for FBN, else the highest level present."""
    if bin_count is not None:
        return int(bin_count)
    return int(levels.max()) if levels.size else 1
