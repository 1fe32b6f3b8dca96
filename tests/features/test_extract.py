"""The lazy extraction API: no compute at build time, same values as the numpy functions."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom.data import get_testdata_file
from scipy import ndimage
from skimage import data

from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig, compute_features, extract


def _raise(*args: object, **kwargs: object) -> None:
    raise AssertionError("extract() computed something while building the graph")


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    """A 3-D volume built from pydicom's real CT slice, and a blob ROI."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float64)
    vol = np.stack([ndimage.shift(ct, (k, -k), order=1) for k in range(9)])
    rng = np.random.default_rng(3)
    roi = np.zeros(vol.shape, bool)
    roi[2:7, 20:45, 15:40] = True
    roi &= ndimage.binary_opening(rng.random(vol.shape) > 0.2)
    return vol, roi


CFG = FeatureConfig(
    families=("firstorder", "histogram", "glcm", "morphology", "texture"),
    bin_width=40.0,
    glcm_aggregations=("3d_merged", "3d_averaged", "2d_averaged", "2_5d_merged"),
)


def test_config_is_frozen_hashable_and_validated() -> None:
    assert CFG.hash() == FeatureConfig.model_validate_json(CFG.model_dump_json()).hash()
    assert CFG.hash() != FeatureConfig().hash() and len(CFG.hash()) == 16
    with pytest.raises(ConfigError, match="bin_count, bin_width"):
        FeatureConfig(bin_width=10.0, bin_count=8)
    with pytest.raises(ConfigError, match="glcm_aggregations: unknown aggregation"):
        FeatureConfig(glcm_aggregations=("4d",))
    with pytest.raises(ConfigError, match="pixels_size"):
        FeatureConfig.model_validate({"pixels_size": 2})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        CFG.bin_width = 3.0  # type: ignore[misc]


def test_extract_is_lazy_and_matches_numpy(volume: tuple[np.ndarray, np.ndarray]) -> None:
    vol, roi = volume
    spacing = (3.0, 0.66, 0.66)
    image = xr.DataArray(
        da.from_array(vol, chunks=(4, 50, 37)), dims=("z", "y", "x"), attrs={"spacing": spacing}
    )
    # uneven, differently chunked masks (rechunked lazily onto the image grid)
    mask = xr.DataArray(
        da.from_array(roi.astype(np.uint8), chunks=(3, 21, 64)), dims=("z", "y", "x")
    )
    small = np.zeros_like(roi)
    small[4, 60:66, 60:70] = True  # one slice, inside one chunk
    with dask.config.set(scheduler=_raise):
        ds = extract(
            [
                ("a", image, {"tumour": mask, "small": xr.DataArray(small, dims=("z", "y", "x"))}),
                ("b", image, {}),
            ],
            config=CFG,
        )
    assert list(ds.data_vars) == ["features"]
    assert ds.features.dims == ("sample", "feature") and ds.features.dtype == np.float64
    assert isinstance(ds.features.data, da.Array)
    assert list(ds.sample.values) == ["a/tumour", "a/small", "b"]
    assert list(ds.series.values) == ["a", "a", "b"]
    assert list(ds.roi.values) == ["tumour", "small", ""]
    assert list(ds.feature.values) == CFG.feature_names()
    assert ds.attrs["config_hash"] == CFG.hash()

    got = ds.features.compute(scheduler="threads").values
    for row, m in zip(got, (roi, small, None), strict=True):
        ref = compute_features(vol, m, spacing=spacing, config=CFG)
        np.testing.assert_allclose(row, [ref[n] for n in CFG.feature_names()], rtol=1e-10)
    assert np.isfinite(got[0]).all()


def test_extract_colour_and_2d(volume: tuple[np.ndarray, np.ndarray]) -> None:
    rgb = data.astronaut()[::4, ::4]
    image = xr.DataArray(
        da.from_array(np.moveaxis(rgb, -1, 0), chunks=(1, 40, 50)),
        dims=("c", "y", "x"),
        attrs={"spacing": (0.5, 0.5)},
    )
    m = np.zeros(rgb.shape[:2], bool)
    m[30:90, 40:100] = True
    cfg = FeatureConfig(families=("firstorder", "colour", "regionprops"), bin_count=16)
    with dask.config.set(scheduler=_raise):
        ds = extract([("rgb", image, {"box": xr.DataArray(m, dims=("y", "x"))})], config=cfg)
    got = ds.features.compute(scheduler="sync").values[0]
    ref = compute_features(rgb[None], m[None], spacing=(1.0, 0.5, 0.5), config=cfg)
    np.testing.assert_allclose(got, [ref[n] for n in cfg.feature_names()], rtol=1e-10)
    names = cfg.feature_names()
    assert got[names.index("region_total_area")] == pytest.approx(60 * 60 * 0.25)


def test_extract_errors(volume: tuple[np.ndarray, np.ndarray]) -> None:
    vol, roi = volume
    with pytest.raises(ConfigError):
        extract([("x", xr.DataArray(vol, dims=("z", "y", "x")), {})], config=CFG)
    img = xr.DataArray(vol, dims=("z", "y", "x"), attrs={"spacing": (1, 1, 1)})
    with pytest.raises(ConfigError):
        extract([("x", img, {"r": xr.DataArray(roi[:3], dims=("z", "y", "x"))})], config=CFG)
    empty = extract([], config=CFG)
    assert empty.features.shape == (0, len(CFG.feature_names()))


def test_extract_writes_to_zarr(volume: tuple[np.ndarray, np.ndarray], tmp_path) -> None:
    vol, roi = volume
    image = xr.DataArray(vol, dims=("z", "y", "x"), attrs={"spacing": (1.0, 1.0, 1.0)})
    cfg = FeatureConfig(families=("firstorder", "glcm"), bin_count=8)
    ds = extract([("s", image, {"r": xr.DataArray(roi, dims=("z", "y", "x"))})], config=cfg)
    target = tmp_path / "features" / cfg.hash()
    ds.to_zarr(target, consolidated=False)
    back = xr.open_zarr(target, consolidated=False).compute()
    xr.testing.assert_identical(back, ds.compute())
