"""Image types: the configured families on the original image and on filtered images.

pyradiomics's image types, as :attr:`FeatureConfig.image_types
<medpipe.features.FeatureConfig>` options (the filters are in
:mod:`medpipe.features.imagefilters`):

=============  ==============================================  ===========================
image type     image-type names (feature-name prefix)          settings
=============  ==============================================  ===========================
original       none: today's names                             --
log            ``log-sigma-1-0-mm``, one per sigma             ``log_sigma_mm``
wavelet        ``wavelet-LLH`` ... ``wavelet-HHH``,            ``wavelet``,
               ``wavelet-LLL`` (x, y, z letters)               ``wavelet_start_level``,
                                                               ``wavelet_levels``
square, squareroot, logarithm, exponential                     --
gradient       ``gradient``                                    ``gradient_use_spacing``
=============  ==============================================  ===========================

A feature of a filtered image is ``<image type>_<feature>``, e.g.
``wavelet-LLH_glcm_contrast_3d_averaged`` or ``log-sigma-1-0-mm_firstorder_mean``.
Families that read only the mask (``morphology``, ``regionprops``), the colour family
and fitted families are computed on the original image only, as pyradiomics computes
shape on the original only.  Filtered images are grey: a colour image is filtered on its
luminance.

Discretisation: ``bin_count`` / ``bin_width`` apply to every image type; ``min_value`` is
an intensity of the original image (a re-segmentation bound such as -1000 HU) and is not
used for filtered images, whose fixed bin size starts at the ROI minimum (IBSI).

In the distributed extraction (:mod:`medpipe.features.extract`) each ROI's crop gets
:func:`filter_margin` more voxels, and the filter runs on the crop before the families
see it, so ROI voxels never see a crop-edge artefact.  The point-wise types are scaled by
the whole image's ``max |I|`` (pyradiomics's definition), one small lazy reduction per
series (:func:`abs_max_task`) shared by its ROIs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
from skimage.color import rgb2gray

from medpipe.features import imagefilters as flt
from medpipe.features.registry import Family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig

__all__ = [
    "IMAGE_TYPES",
    "ORIGINAL_ONLY",
    "abs_max_task",
    "families_on",
    "feature_name",
    "feature_names",
    "filter_margin",
    "filtered_images",
    "image_type_config",
    "image_type_names",
    "log_name",
]

#: The image types ``FeatureConfig.image_types`` accepts (pyradiomics's, lower case).
IMAGE_TYPES: tuple[str, ...] = (
    "original", "log", "wavelet", "square", "squareroot", "logarithm", "exponential",
    "gradient",
)
#: Point-wise types scaled by the whole image's ``max |I|``.
SCALED: frozenset[str] = frozenset({"square", "squareroot", "logarithm", "exponential"})
#: Families computed on the original image only (mask-only, colour).
ORIGINAL_ONLY: frozenset[str] = frozenset({"morphology", "regionprops", "colour"})

_POINTWISE = {
    "square": flt.square_filter,
    "squareroot": flt.squareroot_filter,
    "logarithm": flt.logarithm_filter,
    "exponential": flt.exponential_filter,
}


def log_name(sigma_mm: float) -> str:
    """``log-sigma-1-0-mm`` for 1 mm (pyradiomics's name without its ``-3D`` suffix)."""
    return f"log-sigma-{str(float(sigma_mm)).replace('.', '-')}-mm"


def image_type_names(config: FeatureConfig) -> list[str]:
    """The image-type names of ``config``, in order (``original`` first if enabled)."""
    names: list[str] = []
    for t in config.image_types:
        if t == "log":
            names += [log_name(s) for s in config.log_sigma_mm]
        elif t == "wavelet":
            names += flt.wavelet_names(3, levels=config.wavelet_levels)
        else:
            names.append(t)
    return names


def families_on(config: FeatureConfig, image_type: str) -> tuple[Family, ...]:
    """The families of ``config`` computed on image type ``image_type`` (a name)."""
    records = config.family_records()
    if image_type == "original":
        return records
    return tuple(f for f in records if f.name not in ORIGINAL_ONLY and f.fitted is None)


def feature_name(image_type: str, name: str) -> str:
    """``name`` for the original image, else ``<image_type>_<name>``."""
    return name if image_type == "original" else f"{image_type}_{name}"


def feature_names(config: FeatureConfig) -> list[str]:
    """Every output name of ``config``: per image type, per family."""
    out: list[str] = []
    for t in image_type_names(config):
        for family in families_on(config, t):
            out += [feature_name(t, n) for n in family.feature_names(config)]
    return out


def image_type_config(config: FeatureConfig, image_type: str) -> FeatureConfig:
    """The config a filtered image's families see: ``min_value`` dropped."""
    if image_type == "original" or config.min_value is None:
        return config
    return config.model_copy(update={"min_value": None})


def filter_margin(config: FeatureConfig, spacing: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis (``z, y, x``) the filters read beyond an output voxel."""
    types = set(config.image_types)
    out = []
    for s in spacing:
        m = 0
        if "log" in types:
            m = max([m] + [flt.log_radius(sig, float(s)) for sig in config.log_sigma_mm])
        if "wavelet" in types:
            m = max(m, flt.wavelet_radius(
                config.wavelet, start_level=config.wavelet_start_level,
                levels=config.wavelet_levels,
            ))
        if "gradient" in types:
            m = max(m, 1)
        out.append(m)
    return tuple(out)


def _grey_block(block: np.ndarray) -> np.ndarray:
    return rgb2gray(block[..., :3])


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    return rgb2gray(img[..., :3]) if img.ndim == 4 else np.asarray(img, dtype=np.float64)


def abs_max_task(arr: da.Array, config: FeatureConfig) -> da.Array | None:
    """The lazy ``max |I|`` of a whole image for the point-wise types, or ``None``.

    ``arr`` is ``z, y, x`` (or ``z, y, x, c`` with ``c`` in one chunk: its luminance).
    """
    if not SCALED & set(config.image_types):
        return None
    grey = arr.map_blocks(_grey_block, drop_axis=3, dtype=np.float64) if arr.ndim == 4 else arr
    return da.abs(grey).max()


def filtered_images(
    image: np.ndarray,
    *,
    spacing: Sequence[float],
    config: FeatureConfig,
    abs_max: float | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(image-type name, image)`` for every image type of ``config``, in order.

    Parameters
    ----------
    image
        ``z, y, x`` (or ``z, y, x, c``): the original image, yielded as it is for
        ``original``; the filters see its luminance.
    spacing
        Voxel size in mm, ``z, y, x``.
    config
        Which image types, and their settings.
    abs_max
        ``max |I|`` over the whole image for the point-wise types (``image`` may be a
        crop of it); ``None``: over ``image``.

    Yields
    ------
    tuple
        The name (``log-sigma-1-0-mm``, ``wavelet-LLH``, ...) and the filtered image.
        A wavelet image a single-slice image cannot have (``H`` across slices) is left
        out, so its features stay NaN.
    """
    grey: np.ndarray | None = None
    for t in config.image_types:
        if t == "original":
            yield t, image
            continue
        if grey is None:
            grey = _grey(image)
        if t == "log":
            for sigma in config.log_sigma_mm:
                yield log_name(sigma), flt.log_filter(grey, sigma_mm=sigma, spacing=spacing)
        elif t == "wavelet":
            out: Mapping[str, np.ndarray] = flt.wavelet_filter(
                grey, wavelet=config.wavelet, start_level=config.wavelet_start_level,
                levels=config.wavelet_levels,
            )
            yield from out.items()
        elif t == "gradient":
            yield t, flt.gradient_filter(
                grey, spacing=spacing, use_spacing=config.gradient_use_spacing
            )
        else:
            m = float(np.max(np.abs(grey))) if abs_max is None else float(abs_max)
            yield t, _POINTWISE[t](grey, abs_max=m)
