"""Local intensity features, IBSI 1 section 3.2 (``9ST6``): local and global intensity peak.

The peak at an ROI voxel is the mean intensity of the image voxels whose centres lie
within ``r = (3 / (4π))^(1/3) cm ≈ 6.2 mm`` of its centre (a 1 cm³ sphere drawn in
millimetres with the voxel spacing), including the centre and voxels outside the ROI;
voxels beyond the image border do not exist and are not counted.  The *local intensity
peak* (``VJGA``) is the highest peak over the voxels of maximum intensity in the ROI; the
*global intensity peak* (``0F91``) the highest over all ROI voxels.  Both use the
unfiltered (not discretised) intensities.

The peaks of all voxels come from one FFT convolution of the image with the spherical
kernel (``scipy.signal.fftconvolve``), divided by the same convolution of the in-image
indicator, over the ROI's bounding box grown by the kernel's half-width.  The family
declares :data:`RADIUS_MM` as its ``margin_mm``, so the distributed extraction crops
enough of the image around the ROI for the sphere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import fftconvolve

from medpipe.features.registry import Family, register_family
from medpipe.features.sample import roi_box

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "FEATURES",
    "RADIUS_MM",
    "sphere_kernel",
    "peak_map",
    "peak_features",
    "peak_feature_names",
]

FEATURES: tuple[str, ...] = ("local", "global")

#: Radius of the 1 cm³ sphere, in mm.
RADIUS_MM: float = float((3.0 / (4.0 * np.pi)) ** (1.0 / 3.0) * 10.0)


def sphere_kernel(spacing: Sequence[float], radius_mm: float = RADIUS_MM) -> np.ndarray:
    """Boolean ``z, y, x`` kernel of the voxel offsets within ``radius_mm`` of the centre.

    Parameters
    ----------
    spacing
        Voxel size in mm, ``z, y, x``.
    radius_mm
        Sphere radius.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    half = np.floor(radius_mm / sp + 1e-9).astype(int)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, sp, strict=True)]
    dz, dy, dx = np.meshgrid(*axes, indexing="ij")
    return dz**2 + dy**2 + dx**2 <= radius_mm**2 * (1 + 1e-12)


def peak_map(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    radius_mm: float = RADIUS_MM,
) -> np.ndarray:
    """The spherical mean intensity at every ROI voxel (NaN outside the ROI).

    Parameters
    ----------
    image
        ``z, y, x`` intensities (a 2-D array is one slice): the image around the ROI,
        at least ``radius_mm`` beyond it where the real image extends that far.
    mask
        Boolean ROI of the same shape.
    spacing
        Voxel size in mm, ``z, y, x``.
    radius_mm
        Sphere radius (IBSI: the 1 cm³ sphere, :data:`RADIUS_MM`).

    Returns
    -------
    numpy.ndarray
        ``float64`` of ``image``'s shape (3-D).
    """
    img = np.asarray(image, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if img.ndim == 2:
        img, m = img[None], m[None]
    out = np.full(img.shape, np.nan)
    if not m.any():
        return out
    kernel = sphere_kernel(spacing, radius_mm).astype(np.float64)
    half = [k // 2 for k in kernel.shape]
    box = roi_box(m)
    # the ROI box plus the kernel's reach, clipped to the image
    lo = [max(b.start - h, 0) for b, h in zip(box, half, strict=True)]
    hi = [min(b.stop + h, n) for b, h, n in zip(box, half, img.shape, strict=True)]
    region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = img[region]
    sums = fftconvolve(sub, kernel, mode="same")
    inner = tuple(slice(b.start - a, b.stop - a) for b, a in zip(box, lo, strict=True))
    clipped = any(
        b.start - a < h or b_hi - b.stop < h
        for b, a, b_hi, h in zip(box, lo, hi, half, strict=True)
    )
    if clipped:  # the image ends within the sphere's reach: fewer voxels near its edge
        counts = np.rint(fftconvolve(np.ones_like(sub), kernel, mode="same"))[inner]
    else:  # every ROI voxel's sphere lies inside the image: all of its voxels count
        counts = np.full(sums[inner].shape, float(kernel.sum()))
    mean = sums[inner] / counts
    out[box] = np.where(m[box], mean, np.nan)
    return out


def peak_features(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    spacing: Sequence[float],
    radius_mm: float = RADIUS_MM,
) -> dict[str, float]:
    """IBSI local and global intensity peak of an ROI.

    Parameters
    ----------
    image
        ``z, y, x`` intensities (a 2-D array is one slice).
    mask
        Boolean ROI of the same shape; the whole image when ``None``.
    spacing
        Voxel size in mm, ``z, y, x``.
    radius_mm
        Sphere radius (default the 1 cm³ sphere).

    Returns
    -------
    dict
        ``peaks_local``, ``peaks_global`` (NaN for an empty ROI).
    """
    img = np.asarray(image, dtype=np.float64)
    m = np.ones(img.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if img.ndim == 2:
        img, m = img[None], m[None]
    if not m.any():
        return dict.fromkeys(peak_feature_names(), float("nan"))
    peaks = peak_map(img, m, spacing=spacing, radius_mm=radius_mm)
    vmax = img[m].max()
    hottest = m & (img == vmax)
    return {
        "peaks_local": float(peaks[hottest].max()),
        "peaks_global": float(np.nanmax(peaks)),
    }


def peak_feature_names() -> list[str]:
    """Feature names ``peaks_<feature>`` in output order."""
    return [f"peaks_{f}" for f in FEATURES]


def _names(config: FeatureConfig) -> list[str]:
    return peak_feature_names()


def _compute(sample: Sample) -> dict[str, float]:
    return peak_features(sample.grey, sample.mask, spacing=sample.spacing)


FAMILY = register_family(Family("peaks", _names, _compute, margin_mm=RADIUS_MM))
