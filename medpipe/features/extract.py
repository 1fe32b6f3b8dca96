"""Lazy, distributed feature extraction: images + ROIs → an ``(sample, feature)`` Dataset.

Each sample (a series, or a series and one ROI) becomes a handful of dask tasks:

1. per mask block, the bounding box of the ROI inside that block (a few integers);
2. one task merging those into the ROI bounding box (plus ``crop_margin`` voxels);
3. per image block, the part of the block inside that box (empty for blocks outside);
4. one task that assembles the cropped image and mask and computes the feature vector.

So blocks are read and cropped where they live and only the ROI-sized crop and the
small feature vector travel.  Nothing is computed when :func:`extract` is called; the
caller writes the result (``ds.to_zarr(store / "features" / cfg.hash())``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from skimage.color import rgb2gray

from medpipe.errors import ConfigError
from medpipe.features import colour, firstorder, glcm, glrlm, pixels, shape, texture
from medpipe.features.discretise import discretise_image

__all__ = ["FeatureConfig", "compute_features", "extract", "FAMILIES"]

Family = Literal[
    "firstorder",
    "histogram",
    "glcm",
    "glrlm",
    "morphology",
    "texture",
    "colour",
    "regionprops",
    "pixels",
    "hog",
]
FAMILIES: tuple[str, ...] = (
    "firstorder",
    "histogram",
    "glcm",
    "glrlm",
    "morphology",
    "texture",
    "colour",
    "regionprops",
    "pixels",
    "hog",
)


class FeatureConfig(BaseModel):
    """Frozen feature-extraction settings; :meth:`hash` names the output group.

    Discretisation: give ``bin_count`` (fixed bin number, the default with 32 bins) or
    ``bin_width`` (fixed bin size, optionally from ``min_value``).  Setting both to
    ``None`` takes the ROI intensities as grey levels already (integers >= 1), as for the
    IBSI digital phantom.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    families: tuple[Family, ...] = ("firstorder", "histogram", "glcm", "morphology")
    bin_count: int | None = 32
    bin_width: float | None = None
    min_value: float | None = None
    glcm_aggregations: tuple[str, ...] = ("3d_merged", "3d_averaged", "2d_averaged")
    glcm_distance: int = 1
    glrlm_aggregations: tuple[str, ...] = ("3d_merged", "3d_averaged", "2d_averaged")
    lbp_points: int = 8
    lbp_radius: float = 1.0
    hsv_bins: int = 8
    crop_margin: int = 1
    #: edge of the plane that the ``pixels`` and ``hog`` families resample to
    pixels_size: int = 28

    @field_validator("glcm_aggregations", "glrlm_aggregations")
    @classmethod
    def _known_aggregations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(glcm.AGGREGATIONS))
        if unknown:
            raise ValueError(
                f"unknown GLCM aggregation(s) {unknown}; use {list(glcm.AGGREGATIONS)}"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _bin_width_replaces_default_bin_count(cls, data: Any) -> Any:
        # bin_count defaults to 32; giving only bin_width means fixed bin size
        if isinstance(data, dict) and data.get("bin_width") is not None and "bin_count" not in data:
            data = {**data, "bin_count": None}
        return data

    @model_validator(mode="after")
    def _one_discretisation(self) -> FeatureConfig:
        if self.bin_count is not None and self.bin_width is not None:
            raise ValueError(
                "set bin_count (fixed bin number) or bin_width (fixed bin size), not both"
            )
        if self.bin_count is not None and self.bin_count < 1:
            raise ValueError("bin_count must be >= 1")
        if self.bin_width is not None and not self.bin_width > 0:
            raise ValueError("bin_width must be > 0")
        if self.pixels_size < 4:
            raise ValueError("pixels_size must be >= 4")
        if self.glcm_distance < 1 or self.crop_margin < 0:
            raise ValueError("glcm_distance must be >= 1 and crop_margin >= 0")
        if len(set(self.families)) != len(self.families):
            raise ValueError("families must not repeat")
        return self

    def hash(self) -> str:
        """Stable 12-hex-digit digest of the settings (the Zarr group name)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def feature_names(self) -> list[str]:
        """The output feature names, in order (independent of the data)."""
        names: list[str] = []
        for fam in self.families:
            if fam == "firstorder":
                names += firstorder.STATISTICS_NAMES
            elif fam == "histogram":
                names += firstorder.HISTOGRAM_NAMES
            elif fam == "glcm":
                names += glcm.glcm_feature_names(self.glcm_aggregations)
            elif fam == "glrlm":
                names += glrlm.glrlm_feature_names(self.glrlm_aggregations)
            elif fam == "morphology":
                names += shape.MORPHOLOGY_NAMES
            elif fam == "texture":
                names += [*texture.lbp_feature_names(points=self.lbp_points), "laplacian_variance"]
            elif fam == "colour":
                names += colour.hsv_feature_names(bins=self.hsv_bins)
            elif fam == "regionprops":
                names += shape.REGIONPROPS_NAMES
            elif fam == "pixels":
                names += pixels.pixel_feature_names(size=self.pixels_size)
            elif fam == "hog":
                names += pixels.hog_feature_names(size=self.pixels_size)
        return names


def _roi_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, from per-axis projections (no full ``nonzero``)."""
    box: list[slice] = []
    sub = mask
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        hit = np.flatnonzero(sub.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        # later projections only need the part of the mask already known to hold the ROI
        sub = mask[tuple(box)]
    return tuple(box)


def compute_features(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    spacing: Sequence[float],
    config: FeatureConfig,
) -> dict[str, float]:
    """All configured features of one in-memory sample.

    Parameters
    ----------
    image
        ``z, y, x`` intensities, or ``z, y, x, c`` RGB (channel last).  Grey-level
        families use the luminance of a colour image.
    mask
        Boolean ROI on the spatial grid, or ``None`` for the whole image.
    spacing
        Voxel size in mm, ``z, y, x``.
    config
        What to compute.

    Returns
    -------
    dict
        Exactly ``config.feature_names()`` → value; NaN where a feature does not apply
        (colour features of a grey image, regionprops of a multi-slice mask, empty ROI).
    """
    img = np.asarray(image)
    is_rgb = img.ndim == 4
    grey = rgb2gray(img[..., :3]) if is_rgb else np.asarray(img, dtype=np.float64)
    m = np.ones(grey.shape, bool) if mask is None else np.asarray(mask, bool)
    if m.shape != grey.shape:
        raise ValueError(f"mask shape {m.shape} differs from image shape {grey.shape}")
    out = dict.fromkeys(config.feature_names(), np.nan)
    fams = set(config.families)
    empty = not m.any()
    def grey_box() -> np.ndarray:  # the ROI's bounding box, voxels outside the ROI zeroed
        if mask is None:
            return grey
        box = _roi_box(m)
        return np.where(m[box], grey[box], 0.0)

    if {"firstorder", "histogram", "glcm", "glrlm"} & fams and not empty:
        # these families see only ROI voxels (GLCM pairs need both ends in the ROI), so
        # they run on the ROI bounding box: a large image with a small ROI costs little
        box = _roi_box(m)
        grey_roi, m_roi = grey[box], m[box]
    if {"histogram", "glcm", "glrlm"} & fams and not empty:
        levels = discretise_image(
            grey_roi,
            m_roi,
            bin_width=config.bin_width,
            bin_count=config.bin_count,
            min_value=config.min_value,
        )
        ng = config.bin_count if config.bin_count is not None else int(levels.max())
        if "histogram" in fams:
            out.update(firstorder.histogram_features(levels[m_roi], n_levels=ng))
        if "glcm" in fams:
            out.update(
                glcm.glcm_features(
                    levels,
                    n_levels=ng,
                    distance=config.glcm_distance,
                    aggregations=config.glcm_aggregations,
                )
            )
        if "glrlm" in fams:
            out.update(
                glrlm.glrlm_features(levels, n_levels=ng, aggregations=config.glrlm_aggregations)
            )
    if "firstorder" in fams and not empty:
        out.update(firstorder.statistics_features(grey_roi[m_roi]))
    if "morphology" in fams and not empty:
        out.update(shape.morphology_features(m, spacing=spacing, image=grey))
    if "texture" in fams and not empty:
        out.update(
            texture.lbp_features(grey, m, points=config.lbp_points, radius=config.lbp_radius)
        )
        out["laplacian_variance"] = texture.laplacian_variance(grey, m)
    if "colour" in fams and is_rgb and not empty:
        out.update(colour.hsv_features(img[..., :3], m, bins=config.hsv_bins))
    if "pixels" in fams and not empty:
        out.update(pixels.pixel_features(grey_box(), size=config.pixels_size))
    if "hog" in fams and not empty:
        out.update(pixels.hog_features(grey_box(), size=config.pixels_size))
    if "regionprops" in fams and m.shape[0] == 1:
        out.update(shape.regionprops_features(m, spacing=spacing))
    return out


# --------------------------------------------------------------------------- graph pieces


def _block_bbox(mask_block: np.ndarray, offset: tuple[int, ...]) -> tuple | None:
    idx = np.nonzero(mask_block)
    if idx[0].size == 0:
        return None
    lo = tuple(int(i.min()) + o for i, o in zip(idx, offset, strict=True))
    hi = tuple(int(i.max()) + 1 + o for i, o in zip(idx, offset, strict=True))
    return lo, hi


def _merge_bbox(boxes: list, margin: int, shape: tuple[int, ...]) -> tuple | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    lo = tuple(max(min(b[0][a] for b in boxes) - margin, 0) for a in range(len(shape)))
    hi = tuple(min(max(b[1][a] for b in boxes) + margin, shape[a]) for a in range(len(shape)))
    return lo, hi


def _block_crop(
    image_block: np.ndarray, mask_block: np.ndarray, offset: tuple[int, ...], box: tuple | None
) -> tuple | None:
    if box is None:
        return None
    lo = [max(b, o) for b, o in zip(box[0], offset, strict=True)]
    hi = [min(b, o + n) for b, o, n in zip(box[1], offset, mask_block.shape, strict=True)]
    if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
        return None
    sl = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset, strict=True))
    return tuple(lo), np.array(image_block[sl]), np.array(mask_block[sl], dtype=bool)


def _assemble_and_compute(
    pieces: list,
    box: tuple | None,
    extra_shape: tuple[int, ...],
    dtype: np.dtype,
    spacing: tuple[float, ...],
    config: FeatureConfig,
) -> np.ndarray:
    names = config.feature_names()
    if box is None:  # empty ROI
        return np.full(len(names), np.nan)
    size = tuple(h - lo for lo, h in zip(box[0], box[1], strict=True))
    img = np.zeros(size + extra_shape, dtype=dtype)
    msk = np.zeros(size, dtype=bool)
    for p in pieces:
        if p is None:
            continue
        lo, ib, mb = p
        sl = tuple(slice(a - b0, a - b0 + n) for a, b0, n in zip(lo, box[0], mb.shape, strict=True))
        img[sl] = ib
        msk[sl] = mb
    feats = compute_features(img, msk, spacing=spacing, config=config)
    return np.array([feats[n] for n in names], dtype=np.float64)


def _whole_image(
    image: np.ndarray, spacing: tuple[float, ...], config: FeatureConfig
) -> np.ndarray:
    feats = compute_features(image, None, spacing=spacing, config=config)
    return np.array([feats[n] for n in config.feature_names()], dtype=np.float64)


def _as_spatial(image: xr.DataArray) -> da.Array:
    """The image as a dask array ``z, y, x`` (+ ``c`` last, in one chunk) ."""
    dims = tuple(image.dims)
    spatial = tuple(d for d in dims if d != "c")
    if spatial not in (("z", "y", "x"), ("y", "x")):
        raise ConfigError(f"image dims must be (c,) z, y, x or (c,) y, x; got {dims}")
    order = spatial + (("c",) if "c" in dims else ())
    arr = image.transpose(*order).data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks="auto")
    if spatial == ("y", "x"):
        arr = arr[None]
    if "c" in dims:
        arr = arr.rechunk({arr.ndim - 1: -1})
    return arr


def _sample_vector(
    arr: da.Array,
    mask: xr.DataArray | None,
    spacing: tuple[float, ...],
    config: FeatureConfig,
) -> dask.delayed:
    extra = arr.shape[3:]
    if mask is None:
        return dask.delayed(_whole_image, pure=True)(arr, spacing, config)
    m = mask.data
    if m.ndim == 2:
        m = m[None]
    if tuple(m.shape) != arr.shape[:3]:
        raise ConfigError(f"mask shape {m.shape} differs from the image's {arr.shape[:3]}")
    if not isinstance(m, da.Array):
        m = da.from_array(np.asarray(m), chunks=arr.chunks[:3])
    m = (m != 0).rechunk(arr.chunks[:3])
    mblocks = m.to_delayed()
    iblocks = arr.to_delayed()
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in arr.chunks[:3]]
    grid = list(itertools.product(*(range(n) for n in m.numblocks)))
    offsets = {g: tuple(int(starts[a][g[a]]) for a in range(3)) for g in grid}
    bbox = dask.delayed(_block_bbox, pure=True)
    boxes = [bbox(mblocks[g], offsets[g]) for g in grid]
    box = dask.delayed(_merge_bbox, pure=True)(boxes, config.crop_margin, m.shape)
    crop = dask.delayed(_block_crop, pure=True)
    pieces = [crop(iblocks[g + (0,) * len(extra)], mblocks[g], offsets[g], box) for g in grid]
    return dask.delayed(_assemble_and_compute, pure=True)(
        pieces, box, extra, arr.dtype, spacing, config
    )


def extract(
    images: Sequence[tuple[str, xr.DataArray, Mapping[str, xr.DataArray]]],
    *,
    config: FeatureConfig,
) -> xr.Dataset:
    """Build the lazy feature table of a batch of series.

    Parameters
    ----------
    images
        ``(series_key, image, {roi_name: mask})`` items.  ``image`` has dims
        ``z, y, x`` (or ``c, y, x`` / ``c, z, y, x`` for colour, or ``y, x``) and
        ``attrs["spacing"]`` in mm (``z, y, x``; a 2-element ``y, x`` spacing gets
        ``z = 1``).  Masks share the spatial grid.  With no ROI, the whole image is one
        sample.
    config
        What to compute.

    Returns
    -------
    xarray.Dataset
        Variable ``features`` (``sample, feature``, float64, dask-backed, one chunk per
        sample) with coords ``sample`` (``"<series>/<roi>"`` or ``"<series>"``),
        ``series``, ``roi`` (``""`` without ROI) and ``feature``; attrs ``config_hash``
        and ``config`` (JSON).  Nothing is computed here.
    """
    names = config.feature_names()
    vectors: list[da.Array] = []
    samples: list[str] = []
    series: list[str] = []
    rois: list[str] = []
    for key, image, masks in images:
        if "spacing" not in image.attrs:
            raise ConfigError(f"image {key!r} has no attrs['spacing'] (mm, z, y, x)")
        spacing = tuple(float(s) for s in image.attrs["spacing"])
        if len(spacing) == 2:
            spacing = (1.0, *spacing)
        arr = _as_spatial(image)
        items: list[tuple[str | None, Any]] = list(masks.items()) or [(None, None)]
        for roi, mask in items:
            vec = _sample_vector(arr, mask, spacing, config)
            vectors.append(da.from_delayed(vec, shape=(len(names),), dtype=np.float64))
            samples.append(f"{key}/{roi}" if roi is not None else str(key))
            series.append(str(key))
            rois.append("" if roi is None else str(roi))
    data = da.stack(vectors) if vectors else da.zeros((0, len(names)), dtype=np.float64)
    return xr.Dataset(
        {"features": (("sample", "feature"), data)},
        coords={
            "sample": np.array(samples, dtype=object),
            "series": ("sample", np.array(series, dtype=object)),
            "roi": ("sample", np.array(rois, dtype=object)),
            "feature": np.array(names, dtype=object),
        },
        attrs={"config_hash": config.hash(), "config": config.model_dump_json()},
    )
