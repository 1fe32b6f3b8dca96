"""IBSI 1 image processing before feature calculation (IBSI 1 chapter 2).

The steps IBSI's CT-phantom configurations A–E use, in IBSI's order:

1. **interpolation** to a new voxel spacing (isotropic 3-D, or in-plane only for the 2D
   configurations) on IBSI's *align grid centres* grid (:func:`ibsi_grid`);
2. **rounding** of the interpolated intensities to integers (calibrated, discrete units
   such as CT's HU);
3. **ROI interpolation** with its own method (trilinear, or nearest neighbour), binarised
   with the partial-volume threshold ``δ`` (``R >= δ``, IBSI's 0.5);
4. **re-segmentation**: the interpolated ROI is the *morphological* mask; the *intensity*
   mask keeps only its voxels inside the range ``[a, b]`` (:func:`resegment_range`) and
   then inside ``μ ± kσ`` of those (:func:`filter_outliers`, IBSI's 3σ).

How this grid differs from :func:`medpipe.preprocess.resample.resample_isotropic`
(which keeps SciPy's convention): medpipe's pipeline resampler keeps voxel 0 where it is
(*align grid origins*) and keeps only the output voxels inside the input extent,
``floor((n - 1) s / s') + 1`` of them, so it never extrapolates and the store's
``origin`` stays valid.  IBSI instead takes ``n' = ceil(n s / s')`` voxels centred on
the input grid's centre, so the new grid reaches up to half a voxel beyond the input on
both sides, extrapolated with the nearest boundary value (SciPy's ``mode="nearest"``).
The two grids differ by a sub-voxel shift, which changes IBSI's reference values by
more than their tolerance; this module implements IBSI's grid for IBSI validation and
for users who want IBSI-compliant features.  IBSI's tricubic spline is SciPy's order-3
B-spline with its prefilter (interpolating, not smoothing), with ``mode="nearest"``
padding.

Where the pipeline calls it: ``FeatureConfig.ibsi_processing`` makes
:func:`medpipe.features.compute_features` run :func:`process_roi` first, and
:func:`medpipe.features.extract` run it inside each ROI's lazy task on the ROI's crop
(read with :attr:`IBSIProcessing.margin_voxels` more voxels), on the whole volume's grid
restricted to the crop (``crop=``, :func:`crop_grid`), so a crop's result equals the
whole volume's.  Everything here is pure NumPy/SciPy on in-memory arrays;
:func:`process_roi_lazy` wraps :func:`process_roi` as one Dask task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import dask
import numpy as np
from pydantic import Field, model_validator
from scipy import ndimage as ndi

from medpipe.config import FrozenConfig
from medpipe.errors import ConfigError
from medpipe.features.resegment import filter_outliers, resegment_range

__all__ = [
    "INTERPOLATION_ORDERS",
    "IBSIProcessing",
    "crop_grid",
    "ProcessedROI",
    "filter_outliers",
    "ibsi_grid",
    "interpolate",
    "interpolate_mask",
    "process_roi",
    "process_roi_lazy",
    "resegment_range",
]

#: IBSI's interpolation methods -> SciPy spline order (``linear`` is bi-/trilinear).
INTERPOLATION_ORDERS: dict[str, int] = {"nearest": 0, "linear": 1, "cubic": 3}

Method = Literal["nearest", "linear", "cubic"]


def ibsi_grid(n: int, spacing: float, new_spacing: float) -> tuple[int, float, float]:
    """IBSI's *align grid centres* interpolation grid along one axis.

    Parameters
    ----------
    n
        Number of input voxels along the axis.
    spacing, new_spacing
        Input and output voxel spacing (mm).

    Returns
    -------
    (int, float, float)
        ``n_b = ceil(n s_a / s_b)`` output voxels; the position of output voxel 0 in input
        grid coordinates, ``x_b = (n - 1 - (s_b / s_a)(n_b - 1)) / 2``; and the step
        ``s_b / s_a``.  Output voxel ``j`` sits at input coordinate ``x_b + j s_b / s_a``
        (the grid centres coincide).
    """
    if n < 1:
        raise ConfigError(f"an axis must have at least one voxel, got {n}")
    if not (spacing > 0 and new_spacing > 0):
        raise ConfigError(f"spacings must be > 0, got {spacing} and {new_spacing}")
    step = float(new_spacing) / float(spacing)
    # a ratio within 1e-9 of an integer is that integer (float noise must not add a voxel)
    frac = n * float(spacing) / float(new_spacing)
    n_b = max(1, math.ceil(frac - 1e-9 * max(1.0, frac)))
    start = 0.5 * (n - 1 - step * (n_b - 1))
    return n_b, start, step


def _spacings(
    shape: tuple[int, ...], spacing: Sequence[float], new_spacing: Sequence[float | None]
) -> list[float]:
    if len(new_spacing) != len(shape) or len(spacing) != len(shape):
        raise ConfigError(
            f"spacing {tuple(spacing)} and new spacing {tuple(new_spacing)} need one value "
            f"per axis of the {len(shape)}-D image"
        )
    return [float(s) if t is None else float(t) for s, t in zip(spacing, new_spacing, strict=True)]


def interpolate(
    image: np.ndarray,
    *,
    spacing: Sequence[float],
    new_spacing: Sequence[float | None],
    method: Method = "linear",
) -> np.ndarray:
    """Interpolate ``image`` onto IBSI's centre-aligned grid of ``new_spacing``.

    Parameters
    ----------
    image
        Intensities (any dimensionality, ``z, y, x`` for medpipe volumes).
    spacing
        Voxel size (mm) per axis.
    new_spacing
        Target voxel size per axis; ``None`` keeps an axis as it is (IBSI's in-plane 2D
        interpolation: ``(None, 2.0, 2.0)``).
    method
        ``"nearest"``, ``"linear"`` (bi-/trilinear) or ``"cubic"`` (IBSI's tricubic
        spline: SciPy's prefiltered order-3 B-spline).

    Returns
    -------
    numpy.ndarray
        ``float64`` image of shape ``ceil(n s / s')`` per axis; beyond the input grid the
        boundary intensities are extended (IBSI's recommended padding).
    """
    if method not in INTERPOLATION_ORDERS:
        raise ConfigError(f"method must be one of {sorted(INTERPOLATION_ORDERS)}, got {method!r}")
    arr = np.asarray(image, dtype=np.float64)
    targets = _spacings(arr.shape, spacing, new_spacing)
    grids = [ibsi_grid(n, s, t) for n, s, t in zip(arr.shape, spacing, targets, strict=True)]
    return _resample(arr, grids, INTERPOLATION_ORDERS[method])


def _resample(arr: np.ndarray, grids: Sequence[tuple[int, float, float]], order: int
              ) -> np.ndarray:
    """``arr`` at input coordinates ``start + j step`` (``(n, start, step)`` per axis)."""
    return ndi.affine_transform(
        np.asarray(arr, dtype=np.float64),
        matrix=np.array([g[2] for g in grids]),
        offset=np.array([g[1] for g in grids]),
        output_shape=tuple(g[0] for g in grids),
        order=order,
        mode="nearest",
        prefilter=order > 1,
    )


def crop_grid(
    offset: int, n: int, n_full: int, spacing: float, new_spacing: float
) -> tuple[int, float, float]:
    """The part of the full volume's IBSI grid that falls inside a crop, along one axis.

    Parameters
    ----------
    offset, n
        The crop's first input voxel and its length.
    n_full
        The full volume's length (its grid is :func:`ibsi_grid`'s).
    spacing, new_spacing
        Input and output spacing (mm).

    Returns
    -------
    (int, float, float)
        Output voxels, position of the first one in the crop's grid coordinates, and the
        step: the output voxels of the full grid between the crop's first and last voxel
        (and beyond them where the crop reaches the volume's edge, IBSI's extrapolation).
    """
    n_b, start, step = ibsi_grid(n_full, spacing, new_spacing)
    j_lo = 0 if offset <= 0 else math.ceil((offset - start) / step - 1e-9)
    last = offset + n - 1
    j_hi = n_b - 1 if offset + n >= n_full else math.floor((last - start) / step + 1e-9)
    j_lo, j_hi = max(j_lo, 0), min(j_hi, n_b - 1)
    return max(0, j_hi - j_lo + 1), start + j_lo * step - offset, step


def interpolate_mask(
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    new_spacing: Sequence[float | None],
    method: Literal["nearest", "linear"] = "linear",
    partial_volume: float = 0.5,
) -> np.ndarray:
    """Interpolate a binary ROI like :func:`interpolate` and binarise it (``R >= δ``).

    Parameters
    ----------
    mask
        Boolean (or 0/1) ROI.
    spacing, new_spacing
        As for :func:`interpolate`.
    method
        ``"linear"`` (IBSI's trilinear ROI interpolation) or ``"nearest"``.
    partial_volume
        The partial-volume threshold ``δ`` in ``(0, 1]``.

    Returns
    -------
    numpy.ndarray
        Boolean mask on the interpolated grid.
    """
    if method not in ("nearest", "linear"):
        raise ConfigError(f"ROI interpolation must be 'nearest' or 'linear', got {method!r}")
    if not 0 < partial_volume <= 1:
        raise ConfigError(f"partial_volume must be in (0, 1], got {partial_volume}")
    frac = interpolate(
        np.asarray(mask, dtype=bool).astype(np.float64),
        spacing=spacing, new_spacing=new_spacing, method=method,
    )
    return _binarise(frac, partial_volume)


def _binarise(frac: np.ndarray, partial_volume: float) -> np.ndarray:
    # 1e-12: trilinear weights summing to 0.4999999999 must not drop a voxel (IBSI notes)
    return frac >= partial_volume - 1e-12


class IBSIProcessing(FrozenConfig):
    """IBSI image-processing settings (IBSI 1 chapter 2, the CT phantom's table).

    ``spacing_mm`` is the target voxel size ``z, y, x`` (``None``: no interpolation; a
    ``None`` entry keeps that axis, so ``(None, 2, 2)`` is IBSI's in-plane 2D grid).
    ``resegment`` is the closed range ``[a, b]`` (``None`` for an open side);
    ``outlier_sigma`` enables ``μ ± kσ`` filtering, applied after the range.
    """

    spacing_mm: tuple[Annotated[float, Field(gt=0)] | None, ...] | None = None
    interpolation: Method = "linear"
    mask_interpolation: Literal["nearest", "linear"] = "linear"
    partial_volume: Annotated[float, Field(gt=0, le=1)] = 0.5
    round_intensities: bool = True
    resegment: tuple[float | None, float | None] | None = None
    outlier_sigma: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> IBSIProcessing:
        if self.spacing_mm is not None and len(self.spacing_mm) != 3:
            raise ValueError("spacing_mm: give three values (z, y, x), None to keep an axis")
        if self.resegment is not None:
            lo, hi = self.resegment
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"resegment: [{lo}, {hi}] is empty")
        return self

    @property
    def margin_voxels(self) -> int:
        """Input voxels a crop needs beyond the ROI for the interpolation to equal the
        whole image's: the linear stencil, or the decay of the cubic spline's prefilter
        (``0.268^16 < 10^-9``)."""
        if self.spacing_mm is None:
            return 0
        return 16 if self.interpolation == "cubic" else 2

    @property
    def fbs_min_value(self) -> float | None:
        """The lower bound of :attr:`resegment`: IBSI's ``X_min`` for fixed bin size."""
        return None if self.resegment is None else self.resegment[0]


@dataclass(frozen=True)
class ProcessedROI:
    """An image and its ROI after :func:`process_roi`.

    Attributes
    ----------
    image
        ``float64`` intensities on the (interpolated) grid, the whole image.
    morphology_mask
        The interpolated ROI (IBSI's morphological mask).
    intensity_mask
        The re-segmented ROI (IBSI's intensity mask), a subset of ``morphology_mask``.
    spacing
        Voxel size (mm) of the grid, ``z, y, x``.
    """

    image: np.ndarray
    morphology_mask: np.ndarray
    intensity_mask: np.ndarray
    spacing: tuple[float, ...]


def process_roi(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    config: IBSIProcessing,
    crop: tuple[Sequence[int], Sequence[int]] | None = None,
) -> ProcessedROI:
    """Run IBSI's processing (interpolate, round, re-segment) on one image and ROI.

    Parameters
    ----------
    image
        ``z, y, x`` intensities.
    mask
        Boolean ROI on the same grid.
    spacing
        Voxel size in mm, ``z, y, x``.
    config
        The processing settings.
    crop
        ``(offset, full_shape)`` when ``image`` is the crop at ``offset`` of a volume of
        ``full_shape`` (the pipeline's per-ROI crops): the grid is then the full volume's
        IBSI grid restricted to the crop (:func:`crop_grid`), so the result equals the
        whole volume's processing on the crop's output voxels when the crop has
        :attr:`IBSIProcessing.margin_voxels` around the ROI.

    Returns
    -------
    ProcessedROI
        The processed image, its morphological and intensity masks and the new spacing.
    """
    img = np.asarray(image, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if img.shape != m.shape:
        raise ConfigError(f"mask shape {m.shape} differs from image shape {img.shape}")
    if img.ndim != 3 or len(spacing) != 3:
        raise ConfigError(f"process_roi needs a z, y, x volume and spacing, got {img.shape}")
    sp = tuple(float(s) for s in spacing)
    if config.spacing_mm is not None:
        new = config.spacing_mm
        targets = _spacings(img.shape, sp, new)
        if crop is None:
            grids = [ibsi_grid(n, s, t) for n, s, t in zip(img.shape, sp, targets, strict=True)]
        else:
            offset, full = crop
            grids = [crop_grid(int(o), n, int(f), s, t) for o, n, f, s, t
                     in zip(offset, img.shape, full, sp, targets, strict=True)]
        img = _resample(img, grids, INTERPOLATION_ORDERS[config.interpolation])
        frac = _resample(m.astype(np.float64), grids,
                         INTERPOLATION_ORDERS[config.mask_interpolation])
        m = _binarise(frac, config.partial_volume)
        sp = tuple(targets)
    if config.round_intensities:
        # round to 1e-9 first: a half-integer (linear weights of exactly 0.5, frequent on
        # 3 mm -> 2 mm grids) must not round up or down with the last bit of its position
        img = np.rint(np.round(img, 9))
    intensity = m
    if config.resegment is not None:
        intensity = resegment_range(img, intensity, low=config.resegment[0],
                                    high=config.resegment[1])
    if config.outlier_sigma is not None:
        intensity = filter_outliers(img, intensity, n_sigma=config.outlier_sigma)
    return ProcessedROI(img, m, intensity, sp)


def process_roi_lazy(
    image: object, mask: object, *, spacing: Sequence[float], config: IBSIProcessing
) -> dask.delayed:
    """:func:`process_roi` as one lazy Dask task (``image``/``mask`` may be dask arrays).

    Parameters
    ----------
    image, mask, spacing, config
        As for :func:`process_roi`; dask arrays are computed inside the task.

    Returns
    -------
    dask.delayed
        A delayed :class:`ProcessedROI`; nothing is computed here.
    """
    return dask.delayed(process_roi, pure=True)(
        image, mask, spacing=tuple(float(s) for s in spacing), config=config
    )
