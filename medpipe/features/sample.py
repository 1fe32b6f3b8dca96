"""One in-memory sample as the feature families see it (image, ROI and derived crops)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from skimage.color import rgb2gray

from medpipe.features.discretise import discretise_image

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig

__all__ = ["Sample", "roi_box"]


def roi_box(mask: np.ndarray) -> tuple[slice, ...]:
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


class Sample:
    """An image and its ROI, with the views families share computed once, on demand.

    Parameters
    ----------
    image
        ``z, y, x`` intensities, or ``z, y, x, c`` RGB (channel last).
    mask
        Boolean ROI on the spatial grid, or ``None`` for the whole image.
    spacing
        Voxel size in mm, ``z, y, x``.
    config
        The feature config (discretisation and family settings).
    morphology_mask
        IBSI's morphological mask when it differs from ``mask`` (the intensity mask) after
        re-segmentation (:mod:`medpipe.features.ibsi_processing`); ``None``: ``mask``.
        Morphology and GLDZM distances read it; every other family reads ``mask``.

    Attributes
    ----------
    image, is_rgb, grey, mask, spacing, config, empty
        The input; ``grey`` is the luminance of a colour image (float64); ``mask`` is
        all true for the whole image; ``empty`` means the ROI has no voxel.
    """

    def __init__(
        self,
        image: np.ndarray,
        mask: np.ndarray | None,
        *,
        spacing: Sequence[float],
        config: FeatureConfig,
        morphology_mask: np.ndarray | None = None,
    ) -> None:
        img = np.asarray(image)
        self.image = img
        self.is_rgb = img.ndim == 4
        self.grey = rgb2gray(img[..., :3]) if self.is_rgb else np.asarray(img, dtype=np.float64)
        self.whole_image = mask is None
        self.mask = np.ones(self.grey.shape, bool) if mask is None else np.asarray(mask, bool)
        if self.mask.shape != self.grey.shape:
            raise ValueError(
                f"mask shape {self.mask.shape} differs from image shape {self.grey.shape}"
            )
        self.spacing = spacing
        self.config = config
        self.empty = not self.mask.any()
        self.morphology_mask = (
            self.mask if morphology_mask is None else np.asarray(morphology_mask, bool)
        )
        if self.morphology_mask.shape != self.mask.shape:
            raise ValueError(
                f"morphology mask shape {self.morphology_mask.shape} differs from the mask's "
                f"{self.mask.shape}"
            )

    @cached_property
    def box(self) -> tuple[slice, ...]:
        """The ROI's bounding box (non-empty ROI only; with the morphological mask's)."""
        if self.morphology_mask is self.mask:
            return roi_box(self.mask)
        return roi_box(self.mask | self.morphology_mask)

    @cached_property
    def grey_roi(self) -> np.ndarray:
        """``grey`` cropped to :attr:`box`."""
        return self.grey[self.box]

    @cached_property
    def mask_roi(self) -> np.ndarray:
        """``mask`` cropped to :attr:`box`."""
        return self.mask[self.box]

    @cached_property
    def morphology_mask_roi(self) -> np.ndarray:
        """``morphology_mask`` cropped to :attr:`box`."""
        return self.morphology_mask[self.box]

    @cached_property
    def roi_values(self) -> np.ndarray:
        """The grey values of the ROI voxels."""
        return self.grey_roi[self.mask_roi]

    @cached_property
    def levels(self) -> np.ndarray:
        """Discretised grey levels of the box (``1..N_g`` in the ROI, 0 outside)."""
        cfg = self.config
        return discretise_image(
            self.grey_roi,
            self.mask_roi,
            bin_width=cfg.bin_width,
            bin_count=cfg.bin_count,
            min_value=cfg.discretisation_min,
        )

    @cached_property
    def n_levels(self) -> int:
        """``N_g``: the bin count for fixed bin number, else the highest level."""
        cfg = self.config
        return cfg.bin_count if cfg.bin_count is not None else int(self.levels.max())

    @cached_property
    def grey_box(self) -> np.ndarray:
        """The ROI's bounding box of ``grey``, voxels outside the ROI zeroed."""
        if self.whole_image:
            return self.grey
        return np.where(self.mask_roi, self.grey_roi, 0.0)
