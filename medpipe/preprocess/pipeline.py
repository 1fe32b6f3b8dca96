"""The preprocessing config: frozen, validated, hashable steps applied lazily in order."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from medpipe.config import FrozenConfig
from medpipe.preprocess import filters, intensity, morphology, resample
from medpipe.preprocess._core import BlockOp, apply_ops, as_dask, rewrap

__all__ = [
    "GaussianStep",
    "MedianStep",
    "DoGStep",
    "LoGStep",
    "OpeningStep",
    "ClosingStep",
    "WhiteTophatStep",
    "BlackTophatStep",
    "BinaryOpeningStep",
    "BinaryClosingStep",
    "CTWindowStep",
    "ZScoreStep",
    "PercentileClipStep",
    "ResampleStep",
    "Step",
    "PreprocessConfig",
    "run",
]

Mode = Literal["reflect", "constant", "nearest", "mirror", "wrap"]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Frozen(FrozenConfig):
    """A step: a :class:`~medpipe.config.FrozenConfig` that :func:`run` can apply."""

    def block_op(self, image: xr.DataArray, dtype: np.dtype) -> BlockOp | None:
        """This step as a block-wise filter that :func:`run` can fuse, or ``None``."""
        return None


class GaussianStep(_Frozen):
    """:func:`medpipe.preprocess.gaussian`."""

    kind: Literal["gaussian"] = "gaussian"
    sigma_mm: PosFloat | tuple[NonNegFloat, ...]
    truncate: PosFloat = 4.0
    mode: Mode = "reflect"

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return filters.gaussian(
            image, sigma_mm=self.sigma_mm, truncate=self.truncate, mode=self.mode
        )

    def block_op(self, image: xr.DataArray, dtype: np.dtype) -> BlockOp:
        return filters.gaussian_op(
            image, dtype, sigma_mm=self.sigma_mm, truncate=self.truncate, mode=self.mode
        )


class MedianStep(_Frozen):
    """:func:`medpipe.preprocess.median` (ellipsoid footprint, radius in mm)."""

    kind: Literal["median"] = "median"
    radius_mm: NonNegFloat
    mode: Mode = "reflect"

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return filters.median(image, radius_mm=self.radius_mm, mode=self.mode)

    def block_op(self, image: xr.DataArray, dtype: np.dtype) -> BlockOp:
        return filters.median_op(image, dtype, radius_mm=self.radius_mm, mode=self.mode)


class DoGStep(_Frozen):
    """:func:`medpipe.preprocess.difference_of_gaussians`."""

    kind: Literal["difference_of_gaussians"] = "difference_of_gaussians"
    low_mm: NonNegFloat
    high_mm: PosFloat
    truncate: PosFloat = 4.0
    mode: Mode = "nearest"

    @model_validator(mode="after")
    def _order(self) -> DoGStep:
        if self.high_mm < self.low_mm:
            raise ValueError("high_mm must be >= low_mm")
        return self

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return filters.difference_of_gaussians(
            image, low_mm=self.low_mm, high_mm=self.high_mm, truncate=self.truncate,
            mode=self.mode,
        )


class LoGStep(_Frozen):
    """:func:`medpipe.preprocess.laplacian_of_gaussian`."""

    kind: Literal["laplacian_of_gaussian"] = "laplacian_of_gaussian"
    sigma_mm: PosFloat
    truncate: PosFloat = 4.0
    mode: Mode = "reflect"

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return filters.laplacian_of_gaussian(
            image, sigma_mm=self.sigma_mm, truncate=self.truncate, mode=self.mode
        )


class _GreyStep(_Frozen):
    radius_mm: NonNegFloat
    mode: Mode = "reflect"

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        func = getattr(morphology, self.kind)  # type: ignore[attr-defined]
        return func(image, radius_mm=self.radius_mm, mode=self.mode)

    def block_op(self, image: xr.DataArray, dtype: np.dtype) -> BlockOp:
        return morphology.grey_op(
            self.kind,  # type: ignore[attr-defined]
            image, dtype, radius_mm=self.radius_mm, mode=self.mode,
        )


class OpeningStep(_GreyStep):
    """:func:`medpipe.preprocess.opening`."""

    kind: Literal["opening"] = "opening"


class ClosingStep(_GreyStep):
    """:func:`medpipe.preprocess.closing`."""

    kind: Literal["closing"] = "closing"


class WhiteTophatStep(_GreyStep):
    """:func:`medpipe.preprocess.white_tophat`."""

    kind: Literal["white_tophat"] = "white_tophat"


class BlackTophatStep(_GreyStep):
    """:func:`medpipe.preprocess.black_tophat`."""

    kind: Literal["black_tophat"] = "black_tophat"


class _BinaryStep(_Frozen):
    radius_mm: NonNegFloat
    iterations: Annotated[int, Field(ge=1)] = 1

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        func = getattr(morphology, self.kind)  # type: ignore[attr-defined]
        return func(image, radius_mm=self.radius_mm, iterations=self.iterations)


class BinaryOpeningStep(_BinaryStep):
    """:func:`medpipe.preprocess.binary_opening`."""

    kind: Literal["binary_opening"] = "binary_opening"


class BinaryClosingStep(_BinaryStep):
    """:func:`medpipe.preprocess.binary_closing`."""

    kind: Literal["binary_closing"] = "binary_closing"


class CTWindowStep(_Frozen):
    """:func:`medpipe.preprocess.ct_window`."""

    kind: Literal["ct_window"] = "ct_window"
    level: Annotated[float, Field(allow_inf_nan=False)]
    width: PosFloat
    rescale: bool = False

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return intensity.ct_window(
            image, level=self.level, width=self.width, rescale=self.rescale
        )


class ZScoreStep(_Frozen):
    """:func:`medpipe.preprocess.zscore`."""

    kind: Literal["zscore"] = "zscore"
    eps: NonNegFloat = 0.0

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return intensity.zscore(image, eps=self.eps)


class PercentileClipStep(_Frozen):
    """:func:`medpipe.preprocess.percentile_clip`."""

    kind: Literal["percentile_clip"] = "percentile_clip"
    low: Annotated[float, Field(ge=0, le=100)] = 0.5
    high: Annotated[float, Field(ge=0, le=100)] = 99.5

    @model_validator(mode="after")
    def _order(self) -> PercentileClipStep:
        if self.high < self.low:
            raise ValueError("high must be >= low")
        return self

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return intensity.percentile_clip(image, low=self.low, high=self.high)


class ResampleStep(_Frozen):
    """:func:`medpipe.preprocess.resample_isotropic`."""

    kind: Literal["resample_isotropic"] = "resample_isotropic"
    spacing_mm: PosFloat
    order: Literal[0, 1] = 1

    def apply(self, image: xr.DataArray) -> xr.DataArray:
        return resample.resample_isotropic(image, spacing_mm=self.spacing_mm, order=self.order)


Step = Annotated[
    GaussianStep
    | MedianStep
    | DoGStep
    | LoGStep
    | OpeningStep
    | ClosingStep
    | WhiteTophatStep
    | BlackTophatStep
    | BinaryOpeningStep
    | BinaryClosingStep
    | CTWindowStep
    | ZScoreStep
    | PercentileClipStep
    | ResampleStep,
    Field(discriminator="kind"),
]


class PreprocessConfig(FrozenConfig):
    """An ordered, frozen tuple of preprocessing steps.

    Validation, :meth:`hash` (the ``preprocessed/<hash>`` group), ``from_dict``,
    ``from_yaml`` and ``to_yaml`` come from :class:`~medpipe.config.FrozenConfig`.

    Examples
    --------
    >>> cfg = PreprocessConfig(steps=(GaussianStep(sigma_mm=1.0), MedianStep(radius_mm=1.0)))
    >>> len(cfg.hash())
    16
    """

    steps: tuple[Step, ...] = ()

    @classmethod
    def default(cls) -> PreprocessConfig:
        """Gentle denoising: Gaussian sigma 1 mm, then a median of radius 1 mm.

        Nothing destructive: no resampling, clipping or intensity rescaling.
        """
        return cls(steps=(GaussianStep(sigma_mm=1.0), MedianStep(radius_mm=1.0)))


def run(image: xr.DataArray, cfg: PreprocessConfig) -> xr.DataArray:
    """Apply ``cfg.steps`` to ``image`` in order; lazy, nothing is computed.

    Parameters
    ----------
    image
        Dask-backed image with ``attrs["spacing"]`` in mm.
    cfg
        The preprocessing config.

    Returns
    -------
    xarray.DataArray
        The lazy result.

    Notes
    -----
    Consecutive Gaussian, median and grey-morphology steps run as one ``map_overlap``
    with their summed halo (:func:`medpipe.preprocess._core.apply_ops`): the same
    values, bit for bit, without a halo exchange between workers after each filter.
    """
    ops: list[BlockOp] = []

    def flush(image: xr.DataArray) -> xr.DataArray:
        return rewrap(image, apply_ops(as_dask(image), ops)) if ops else image

    for step in cfg.steps:
        op = step.block_op(image, ops[-1].dtype if ops else image.dtype)
        if op is not None:
            ops.append(op)
            continue
        image = flush(image)
        ops = []
        image = step.apply(image)
    return flush(image)
