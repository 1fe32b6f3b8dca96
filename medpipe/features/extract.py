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

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from medpipe.errors import ConfigError
from medpipe.features import imagetypes, registry
from medpipe.features.config import FeatureConfig
from medpipe.features.ibsi_processing import process_roi
from medpipe.features.registry import Family
from medpipe.features.sample import Sample

# ``FAMILIES`` (the registered family names) is served by the module ``__getattr__``
__all__ = ["FeatureConfig", "compute_features", "extract"]


def __getattr__(name: str) -> Any:
    # FAMILIES: the registered family names, computed on access (a view, never stale)
    if name == "FAMILIES":
        return registry.family_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compute_features(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    spacing: Sequence[float],
    config: FeatureConfig,
    morphology_mask: np.ndarray | None = None,
    crop: tuple[Sequence[int], Sequence[int]] | None = None,
    abs_max: float | None = None,
) -> dict[str, float]:
    """All configured features of one in-memory sample, on each of its image types.

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
        What to compute: each of ``config.families`` in turn (their
        :class:`~medpipe.features.registry.Family` records), on each of
        ``config.image_types`` (:mod:`medpipe.features.imagetypes`; filtered images are
        filtered here, so ``image`` must hold the filter's margin around the ROI).
    morphology_mask
        IBSI's morphological mask when re-segmentation made ``mask`` (the intensity mask)
        smaller (:func:`medpipe.features.ibsi_processing.process_roi`); ``None``: ``mask``.
        Not with ``config.ibsi_processing``, which makes both masks itself.
    crop
        ``(offset, full_shape)`` when ``image`` is a crop of a larger volume, so that
        ``config.ibsi_processing`` interpolates on the full volume's grid.
    abs_max
        ``max |I|`` of the whole image when ``image`` is a crop of it (the point-wise
        image types' scale); ``None``: of ``image``.

    Returns
    -------
    dict
        Exactly ``config.feature_names()`` → value; NaN where a feature does not apply
        (colour features of a grey image, regionprops of a multi-slice mask, empty ROI).
    """
    if config.ibsi_processing is not None:  # IBSI processing first (interpolate, re-segment)
        if morphology_mask is not None:
            raise ConfigError("morphology_mask: config.ibsi_processing makes it; pass None")
        img = np.asarray(image)
        roi = process_roi(img, np.ones(img.shape, bool) if mask is None else mask,
                          spacing=spacing, config=config.ibsi_processing, crop=crop)
        image, mask, morphology_mask = roi.image, roi.intensity_mask, roi.morphology_mask
        spacing = roi.spacing
    out: dict[str, float] = dict.fromkeys(config.feature_names(), np.nan)
    typed = imagetypes.filtered_images(image, spacing=spacing, config=config, abs_max=abs_max)
    for image_type, img in typed:
        cfg = imagetypes.image_type_config(config, image_type)
        sample = Sample(img, mask, spacing=spacing, config=cfg, morphology_mask=morphology_mask)
        records: tuple[Family, ...] = imagetypes.families_on(config, image_type)
        for family in records:
            if family.needs_roi and sample.empty:
                continue
            # histogram, GLCM, GLRLM and first order see only the ROI's bounding box
            # (sample.levels, sample.roi_values): a large image with a small ROI costs little
            feats = family.compute(sample)
            out.update({imagetypes.feature_name(image_type, k): v for k, v in feats.items()})
    return out


# --------------------------------------------------------------------------- graph pieces


def _block_bbox(mask_block: np.ndarray, offset: tuple[int, ...]) -> tuple | None:
    idx = np.nonzero(mask_block)
    if idx[0].size == 0:
        return None
    lo = tuple(int(i.min()) + o for i, o in zip(idx, offset, strict=True))
    hi = tuple(int(i.max()) + 1 + o for i, o in zip(idx, offset, strict=True))
    return lo, hi


def _merge_bbox(
    boxes: list, margin: int | Sequence[int], shape: tuple[int, ...]
) -> tuple | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    mg = (margin,) * len(shape) if isinstance(margin, int) else tuple(margin)
    lo = tuple(max(min(b[0][a] for b in boxes) - mg[a], 0) for a in range(len(shape)))
    hi = tuple(min(max(b[1][a] for b in boxes) + mg[a], shape[a]) for a in range(len(shape)))
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
    full_shape: tuple[int, ...] | None = None,
    abs_max: float | None = None,
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
    crop = None if full_shape is None else (box[0], full_shape)
    feats = compute_features(img, msk, spacing=spacing, config=config, crop=crop,
                             abs_max=abs_max)
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
    abs_max: da.Array | None = None,
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
    # crop_margin voxels, or as many as a family reads beyond the ROI (Family.margin_mm),
    # plus what the image types' filters read beyond a voxel (the filter runs on the crop)
    reach = max((f.margin_mm for f in config.family_records()), default=0.0)
    # plus the voxels IBSI interpolation reads around them (IBSIProcessing.margin_voxels)
    proc = 0 if config.ibsi_processing is None else config.ibsi_processing.margin_voxels
    filt = imagetypes.filter_margin(config, spacing)
    margin = tuple(
        max(config.crop_margin, math.ceil(reach / s - 1e-9)) + f + proc
        for s, f in zip(spacing, filt, strict=True)
    )
    box = dask.delayed(_merge_bbox, pure=True)(boxes, margin, m.shape)
    crop = dask.delayed(_block_crop, pure=True)
    pieces = [crop(iblocks[g + (0,) * len(extra)], mblocks[g], offsets[g], box) for g in grid]
    return dask.delayed(_assemble_and_compute, pure=True)(
        pieces, box, extra, arr.dtype, spacing, config, tuple(m.shape), abs_max
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
        abs_max = imagetypes.abs_max_task(arr, config)  # one per series, or None
        items: list[tuple[str | None, Any]] = list(masks.items()) or [(None, None)]
        for roi, mask in items:
            vec = _sample_vector(arr, mask, spacing, config, abs_max)
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
