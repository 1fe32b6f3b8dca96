"""Block kernels: numpy/scipy only, so Dask workers that run them import nothing heavier.

Each kernel is the scipy call a stage makes on one block plus its halo.  The stages in
:mod:`medpipe.preprocess.filters` and :mod:`medpipe.preprocess.morphology` derive the halo;
these functions only run the filter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def gaussian_block(
    block: np.ndarray, *, sigma: Sequence[float], truncate: float, mode: str, cval: float
) -> np.ndarray:
    return ndi.gaussian_filter(block, sigma, mode=mode, cval=cval, truncate=truncate)


def dog_block(
    block: np.ndarray,
    *,
    low: Sequence[float],
    high: Sequence[float],
    truncate: float,
    mode: str,
    cval: float,
) -> np.ndarray:
    # Same arithmetic as skimage.filters.difference_of_gaussians on float input.
    im1 = ndi.gaussian_filter(block, low, mode=mode, cval=cval, truncate=truncate)
    im2 = ndi.gaussian_filter(block, high, mode=mode, cval=cval, truncate=truncate)
    return im1 - im2


def log_block(
    block: np.ndarray, *, sigma: Sequence[float], truncate: float, mode: str, cval: float
) -> np.ndarray:
    return ndi.gaussian_laplace(block, sigma, mode=mode, cval=cval, truncate=truncate)


def median_block(block: np.ndarray, *, footprint: np.ndarray, mode: str, cval: float) -> np.ndarray:
    return ndi.median_filter(block, footprint=footprint, mode=mode, cval=cval)


_GREY = {
    "opening": ndi.grey_opening,
    "closing": ndi.grey_closing,
    "white_tophat": ndi.white_tophat,
    "black_tophat": ndi.black_tophat,
}

_BINARY = {
    "erosion": ndi.binary_erosion,
    "dilation": ndi.binary_dilation,
    "opening": ndi.binary_opening,
    "closing": ndi.binary_closing,
}


def grey_block(
    block: np.ndarray, *, op: str, footprint: np.ndarray, mode: str, cval: float
) -> np.ndarray:
    return _GREY[op](block, footprint=footprint, mode=mode, cval=cval)


def binary_block(
    block: np.ndarray, *, op: str, structure: np.ndarray, iterations: int, border_value: int
) -> np.ndarray:
    return _BINARY[op](
        block != 0, structure=structure, iterations=iterations, border_value=border_value
    )


def ellipsoid_footprint(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid: voxels whose centre lies within ``radius_mm`` of the centre.

    Per axis the half-extent is ``floor(radius_mm / spacing + 1e-9)`` voxels, so the footprint
    always has odd size and is symmetric (no origin shift).  With isotropic unit spacing
    and an integer radius this is ``skimage.morphology.ball``/``disk``.
    """
    half = [int(np.floor(radius_mm / s + 1e-9)) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True))
    return np.asarray(dist2 <= radius_mm**2 * (1 + 1e-12))
