"""Preprocessing stage: lazy Dask filters with their scales in millimetres.

Every function takes an ``xarray.DataArray`` backed by a Dask array, with dims
``("z","y","x")`` or ``("y","x")`` and ``attrs["spacing"]`` in mm, and returns a lazy
DataArray with the same dims, coords and attrs (``spacing`` updated by resampling).
Filters run block-wise with a halo derived from their parameters and equal the
scipy/scikit-image result on the whole array.
"""

from medpipe.preprocess.filters import (
    difference_of_gaussians,
    gaussian,
    laplacian_of_gaussian,
    median,
)
from medpipe.preprocess.intensity import ct_window, dask_percentile, percentile_clip, zscore
from medpipe.preprocess.morphology import (
    binary_closing,
    binary_opening,
    black_tophat,
    closing,
    footprint,
    opening,
    white_tophat,
)
from medpipe.preprocess.pipeline import (
    BinaryClosingStep,
    BinaryOpeningStep,
    BlackTophatStep,
    ClosingStep,
    CTWindowStep,
    DoGStep,
    GaussianStep,
    LoGStep,
    MedianStep,
    OpeningStep,
    PercentileClipStep,
    PreprocessConfig,
    ResampleStep,
    Step,
    WhiteTophatStep,
    ZScoreStep,
    run,
)
from medpipe.preprocess.resample import resample_isotropic

__all__ = [
    "gaussian",
    "median",
    "difference_of_gaussians",
    "laplacian_of_gaussian",
    "opening",
    "closing",
    "white_tophat",
    "black_tophat",
    "binary_opening",
    "binary_closing",
    "footprint",
    "ct_window",
    "zscore",
    "percentile_clip",
    "dask_percentile",
    "resample_isotropic",
    "PreprocessConfig",
    "Step",
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
    "run",
]
