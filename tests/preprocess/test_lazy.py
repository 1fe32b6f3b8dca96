"""Building any stage's graph computes nothing; the statistics stay inside the graph."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import medpipe.preprocess as pp

from ._helpers import as_image, pydicom_ct_volume, raise_if_dask_computes

STAGES: dict[str, Callable[[xr.DataArray], xr.DataArray]] = {
    "gaussian": lambda im: pp.gaussian(im, sigma_mm=1.0),
    "median": lambda im: pp.median(im, radius_mm=1.0),
    "difference_of_gaussians": lambda im: pp.difference_of_gaussians(im, low_mm=1, high_mm=2),
    "laplacian_of_gaussian": lambda im: pp.laplacian_of_gaussian(im, sigma_mm=1.0),
    "opening": lambda im: pp.opening(im, radius_mm=1.5),
    "closing": lambda im: pp.closing(im, radius_mm=1.5),
    "white_tophat": lambda im: pp.white_tophat(im, radius_mm=1.5),
    "black_tophat": lambda im: pp.black_tophat(im, radius_mm=1.5),
    "binary_opening": lambda im: pp.binary_opening(im > 0, radius_mm=1.5),
    "binary_closing": lambda im: pp.binary_closing(im > 0, radius_mm=1.5),
    "ct_window": lambda im: pp.ct_window(im, level=40, width=400),
    "zscore": lambda im: pp.zscore(im),
    "percentile_clip": lambda im: pp.percentile_clip(im, low=1, high=99),
    "resample_isotropic": lambda im: pp.resample_isotropic(im, spacing_mm=1.5),
    "run_default": lambda im: pp.run(im, pp.PreprocessConfig.default()),
}


def test_raise_if_dask_computes_catches_a_compute() -> None:
    with pytest.raises(RuntimeError, match="Too many computes"), raise_if_dask_computes():
        da.ones(4, chunks=2).sum().compute()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_is_lazy(name: str) -> None:
    x, spacing = pydicom_ct_volume()
    image = as_image(x, spacing, (3, 20, 33))
    with raise_if_dask_computes():
        out = STAGES[name](image)
        assert isinstance(out.data, da.Array)
    # the graph is complete: computing it outside the guard works
    assert np.isfinite(np.asarray(out.data[0, :2, :2].compute(), dtype=float)).all()


@pytest.mark.parametrize("name", ["zscore", "percentile_clip"])
def test_statistics_are_in_the_graph(name: str) -> None:
    """Changing the input data (same graph shape) changes the statistics used."""
    x, spacing = pydicom_ct_volume()
    with raise_if_dask_computes():
        a = STAGES[name](as_image(x, spacing, (3, 20, 33)))
        b = STAGES[name](as_image(x * 2 + 100, spacing, (3, 20, 33)))
    # every block depends on all input blocks (the whole-volume reduction)
    assert (
        len(a.data.__dask_graph__())
        > a.data.npartitions + as_image(x, spacing, (3, 20, 33)).data.npartitions
    )
    if name == "zscore":  # z-scores are invariant under an affine map of the input
        np.testing.assert_allclose(a.data.compute(), b.data.compute(), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(b.data.compute(), a.data.compute() * 2 + 100, rtol=1e-6)
