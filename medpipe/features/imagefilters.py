"""The filters behind pyradiomics's image types, on in-memory ``z, y, x`` arrays.

Each function takes a grey image (``float64``, any number of axes; medpipe passes
``z, y, x``) and returns the filtered image (or images) on the same grid.  They follow
pyradiomics 3.0.1's ``radiomics.imageoperations`` (``get<Type>Image``); where medpipe's
numerical route differs from pyradiomics's SimpleITK one, the docstring says how.

:mod:`medpipe.features.imagetypes` runs them on the ROI's crop (with :func:`reach` voxels
of margin, so the ROI never sees the crop edge) inside the lazy per-ROI extraction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medpipe.errors import ConfigError

__all__ = [
    "LOG_TRUNCATE",
    "exponential_filter",
    "gradient_filter",
    "log_filter",
    "log_radius",
    "logarithm_filter",
    "square_filter",
    "squareroot_filter",
    "wavelet_filter",
    "wavelet_names",
    "wavelet_radius",
]

#: Gaussian kernels are cut at this many standard deviations (scipy's default)
LOG_TRUNCATE = 4.0


# ------------------------------------------------------------------ Laplacian of Gaussian


def log_radius(sigma_mm: float, spacing_mm: float) -> int:
    """Half-width (voxels) of the sampled LoG kernel along an axis of ``spacing_mm``."""
    # scipy.ndimage's radius rule for gaussian_filter, and at least the 3-tap Laplacian
    return max(1, int(LOG_TRUNCATE * sigma_mm / spacing_mm + 0.5))


def _gauss_kernels(sigma: float, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampled Gaussian (sum 1) and its second derivative, exact on 1, x and x²."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g0 = np.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else (x == 0).astype(np.float64)
    g0 /= g0.sum()
    g2 = (x**2 - sigma**2) / sigma**4 * g0 if sigma > 0 else np.zeros_like(x)
    # k2 = a g2 + b g0 with sum(k2) = 0 and sum(x² k2) = 2 (the second derivative of x²)
    s2, m2, m0 = g2.sum(), (x**2 * g2).sum(), (x**2 * g0).sum()
    with np.errstate(all="ignore"):
        a = 2.0 / (m2 - s2 * m0)
        k2 = a * (g2 - s2 * g0)
    if not np.all(np.isfinite(k2)):  # sigma far below a voxel: the 3-tap Laplacian
        k2 = np.zeros_like(x)
        k2[radius - 1 : radius + 2] = (1.0, -2.0, 1.0)
    return g0, k2


def log_filter(image: np.ndarray, *, sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Laplacian of Gaussian, sigma in mm, normalised across scale (pyradiomics ``log``).

    ``sigma² · Σ_a ∂²(G_σ * I)/∂x_a²`` with the derivatives in mm: per axis ``a``, the
    separable sampled Gaussian of sigma ``sigma_mm / spacing_b`` voxels on every axis
    ``b``, its second derivative on ``a``, divided by ``spacing_a²``
    (``scipy.ndimage.gaussian_laplace``'s definition with per-axis spacing).  The
    factor ``sigma²`` is SimpleITK's ``SetNormalizeAcrossScale(True)``, which pyradiomics
    sets.

    Differences:

    * from scipy: the second-derivative kernel ``g2`` (scipy's ``order=2`` kernel) is
      replaced by ``a (g2 - sum(g2) g0)``, ``a`` chosen so that it gives 0 on a constant
      and exactly 2 on ``x²``, as ITK normalises its recursive kernel.  scipy's sampled,
      truncated kernel does neither: below ~1 voxel (1 mm on 6.5 mm slices is 0.15
      voxel) it turns a constant into ``-I / sigma²``, a response larger than the
      image's own LoG; at 1.5 to 7.5 voxels its tails still leave ``0.3-0.7 %`` of the
      maximal response on a CT slice in HU.  Sigma far below a voxel tends to the
      3-tap discrete Laplacian ``[1, -2, 1]``.
    * from pyradiomics: SimpleITK's ``LaplacianRecursiveGaussian`` is a recursive (IIR,
      Deriche) approximation of the Gaussian with infinite support; medpipe's kernel is
      the sampled Gaussian cut at :data:`LOG_TRUNCATE` sigma.  Both extend the image by
      its edge value (``mode="nearest"``, ITK's zero-flux boundary).

    Parameters
    ----------
    image
        Grey intensities.
    sigma_mm
        Standard deviation of the Gaussian, in mm (> 0).
    spacing
        Voxel size in mm per axis of ``image``.

    Returns
    -------
    numpy.ndarray
        The filtered image (``float64``).
    """
    if sigma_mm <= 0:
        raise ConfigError(f"log sigma must be > 0 mm, got {sigma_mm}")
    img = np.asarray(image, dtype=np.float64)
    kernels = [
        _gauss_kernels(sigma_mm / float(s), log_radius(sigma_mm, float(s))) for s in spacing
    ]
    out = np.zeros_like(img)
    for ax in range(img.ndim):
        if img.shape[ax] == 1:  # a single slice has no second derivative across it
            continue
        part = img
        for b in range(img.ndim):
            if img.shape[b] > 1:
                k = kernels[b][1] if b == ax else kernels[b][0]
                part = ndimage.correlate1d(part, k, axis=b, mode="nearest")
        out += part / float(spacing[ax]) ** 2
    return out * sigma_mm**2


# ---------------------------------------------------------------------------- wavelets


def _wavelet(name: str):  # -> pywt.Wavelet
    import pywt

    try:
        return pywt.Wavelet(name)
    except ValueError:
        raise ConfigError(
            f"wavelet {name!r} is not a discrete PyWavelets wavelet; see "
            "pywt.wavelist(kind='discrete')"
        ) from None


def wavelet_radius(name: str, *, start_level: int = 0, levels: int = 1) -> int:
    """Voxels of input on either side that one output voxel of :func:`wavelet_filter` reads."""
    return (_wavelet(name).dec_len - 1) * (start_level + levels)


def wavelet_names(ndim: int, *, levels: int = 1) -> list[str]:
    """Image-type names of :func:`wavelet_filter`'s outputs, pyradiomics's spelling.

    One letter per axis in ``x, y, z`` order (the last array axis first), ``L`` low pass
    and ``H`` high pass: ``wavelet-LLH`` is low in x and y, high in z.  Per level the
    ``2**ndim - 1`` detail images (``wavelet2-…`` for the second level), then the last
    level's approximation (``wavelet-LLL``, or ``wavelet<levels>-LLL``).
    """
    names = []
    for idx in range(1, levels + 1):
        tag = "wavelet" if idx == 1 else f"wavelet{idx}"
        names += [f"{tag}-{''.join(k)}" for k in itertools.product("LH", repeat=ndim)][1:]
    tag = "wavelet" if levels == 1 else f"wavelet{levels}"
    return names + [f"{tag}-{'L' * ndim}"]


def wavelet_filter(
    image: np.ndarray, *, wavelet: str = "coif1", start_level: int = 0, levels: int = 1
) -> dict[str, np.ndarray]:
    """Undecimated (stationary) wavelet decomposition, as pyradiomics's ``wavelet``.

    Like pyradiomics's ``_swt3``: the image is padded to even lengths by wrapping one
    voxel, and each level is :func:`pywt.swtn` ``level=1`` (periodic extension) on the
    previous level's approximation, over the axes in ``x, y, z`` order; ``start_level``
    levels are applied and dropped first.  Axes of length 1 (a single slice) are not
    transformed; their letter is ``L`` and names with ``H`` there are left out.

    Difference from pyradiomics: medpipe transforms the ROI's crop, pyradiomics the
    whole image.  The crop has :func:`wavelet_radius` voxels of margin, so ROI voxels at
    least that far from the image border get the same values; nearer the border the
    periodic extension wraps the crop rather than the whole image.

    Parameters
    ----------
    image
        Grey intensities.
    wavelet
        A discrete PyWavelets wavelet name (pyradiomics's default ``coif1``).
    start_level, levels
        pyradiomics's ``start_level`` and ``level``.

    Returns
    -------
    dict
        :func:`wavelet_names` ``->`` filtered image (``float64``, the input's shape).
    """
    import pywt

    w = _wavelet(wavelet)
    img = np.asarray(image, dtype=np.float64)
    order = tuple(range(img.ndim - 1, -1, -1))  # x, y, z
    active = tuple(a for a in order if img.shape[a] > 1)
    if not active:
        raise ConfigError("wavelet image type: the image has a single voxel")
    pad = [(0, 1 if img.shape[a] % 2 and a in active else 0) for a in range(img.ndim)]
    data = np.pad(img, pad, mode="wrap")
    trim = tuple(slice(0, n) for n in img.shape)
    approx_key = "a" * len(active)

    def letters(key: str) -> str:
        by_axis = dict(zip(active, key.replace("a", "L").replace("d", "H"), strict=True))
        return "".join(by_axis.get(a, "L") for a in order)

    for _ in range(start_level):
        data = pywt.swtn(data, w, level=1, start_level=0, axes=active)[0][approx_key]
    out: dict[str, np.ndarray] = {}
    for idx in range(1, levels + 1):
        dec = pywt.swtn(data, w, level=1, start_level=0, axes=active)[0]
        data = dec[approx_key]
        tag = "wavelet" if idx == 1 else f"wavelet{idx}"
        for key, arr in dec.items():
            if key != approx_key:
                out[f"{tag}-{letters(key)}"] = np.ascontiguousarray(arr[trim])
    tag = "wavelet" if levels == 1 else f"wavelet{levels}"
    out[f"{tag}-{'L' * img.ndim}"] = np.ascontiguousarray(data[trim])
    return out


# ------------------------------------------------------------------------- point-wise
#
# pyradiomics scales these by M = max |I| over the whole image (medpipe passes the whole
# image's value in, so a crop gives the same result), keeping the range near the input's.


def square_filter(image: np.ndarray, *, abs_max: float) -> np.ndarray:
    """``(I / sqrt(M))²`` (pyradiomics ``square``); zeros where ``M`` is 0."""
    img = np.asarray(image, dtype=np.float64)
    if abs_max == 0:
        return np.zeros_like(img)
    return (img * (1.0 / np.sqrt(abs_max))) ** 2


def squareroot_filter(image: np.ndarray, *, abs_max: float) -> np.ndarray:
    """``sign(I) · sqrt(|I| · M)`` (pyradiomics ``squareroot``)."""
    img = np.asarray(image, dtype=np.float64)
    return np.sign(img) * np.sqrt(np.abs(img) * abs_max)


def logarithm_filter(image: np.ndarray, *, abs_max: float) -> np.ndarray:
    """``sign(I) · log(|I| + 1) · M / log(M + 1)`` (pyradiomics ``logarithm``).

    pyradiomics divides by the maximum of ``|sign(I) log(|I| + 1)|`` over the image,
    which is ``log(M + 1)``.  Zeros where ``M`` is 0.
    """
    img = np.asarray(image, dtype=np.float64)
    if abs_max == 0:
        return np.zeros_like(img)
    return np.sign(img) * np.log1p(np.abs(img)) * (abs_max / np.log1p(abs_max))


def exponential_filter(image: np.ndarray, *, abs_max: float) -> np.ndarray:
    """``exp(I · log(M) / M)`` (pyradiomics ``exponential``); ones where ``M`` is 0."""
    img = np.asarray(image, dtype=np.float64)
    if abs_max == 0:
        return np.ones_like(img)
    return np.exp(img * (np.log(abs_max) / abs_max))


# --------------------------------------------------------------------------- gradient


def gradient_filter(
    image: np.ndarray, *, spacing: Sequence[float], use_spacing: bool = True
) -> np.ndarray:
    """Gradient magnitude (pyradiomics ``gradient``, SimpleITK's ``GradientMagnitude``).

    Central differences ``(I[i+1] - I[i-1]) / 2`` per axis, divided by the spacing (mm)
    when ``use_spacing`` (pyradiomics's ``gradientUseSpacing``, default true), the edge
    value repeated beyond the border (ITK's zero-flux Neumann boundary; numpy's
    :func:`numpy.gradient` uses one-sided differences there instead).
    """
    img = np.asarray(image, dtype=np.float64)
    total = np.zeros_like(img)
    for ax in range(img.ndim):
        if img.shape[ax] == 1:
            continue
        d = ndimage.correlate1d(img, [-0.5, 0.0, 0.5], axis=ax, mode="nearest")
        if use_spacing:
            d /= float(spacing[ax])
        total += d * d
    return np.sqrt(total)
