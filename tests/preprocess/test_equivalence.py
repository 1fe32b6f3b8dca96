"""Each lazy filter equals scipy / scikit-image run on the whole in-memory array.

Chunkings are drawn by hypothesis (uneven, down to 1 voxel, i.e. smaller than the halo).
Data: real CT, from pydicom's shipped CT_small.dcm (always) and from the shared STS_002
CT (when /work/shared/data is present).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage import filters as skfilters
from skimage import morphology as skmorph

import medpipe.preprocess as pp
from medpipe.errors import ConfigError

from ._helpers import as_image, chunkings, pydicom_ct_volume, sts_ct_crop

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module", params=["pydicom", "sts002"])
def ct(request: pytest.FixtureRequest) -> tuple[np.ndarray, tuple[float, ...]]:
    if request.param == "pydicom":
        return pydicom_ct_volume()
    root = request.getfixturevalue("shared_data")
    return sts_ct_crop(str(root))


def vox(mm: float, spacing: tuple[float, ...]) -> list[float]:
    return [mm / s for s in spacing]


# name -> (dask stage, whole-array reference, exact?)
Case = tuple[
    Callable[[xr.DataArray], xr.DataArray], Callable[[np.ndarray, tuple], np.ndarray], bool
]

CASES: dict[str, Case] = {
    "gaussian": (
        lambda im: pp.gaussian(im, sigma_mm=1.5),
        lambda x, sp: ndi.gaussian_filter(x, vox(1.5, sp), mode="reflect"),
        True,
    ),
    "gaussian_nearest_per_axis": (
        lambda im: pp.gaussian(im, sigma_mm=[4.0, 0.8, 2.0], truncate=3.0, mode="nearest"),
        lambda x, sp: ndi.gaussian_filter(
            x, [4.0 / sp[0], 0.8 / sp[1], 2.0 / sp[2]], truncate=3.0, mode="nearest"
        ),
        True,
    ),
    "median": (
        lambda im: pp.median(im, radius_mm=2.0),
        lambda x, sp: ndi.median_filter(x, footprint=pp.footprint(2.0, sp), mode="reflect"),
        True,
    ),
    "difference_of_gaussians": (
        lambda im: pp.difference_of_gaussians(im, low_mm=1.0, high_mm=2.5),
        lambda x, sp: skfilters.difference_of_gaussians(
            x, low_sigma=vox(1.0, sp), high_sigma=vox(2.5, sp)
        ),
        True,
    ),
    "laplacian_of_gaussian": (
        lambda im: pp.laplacian_of_gaussian(im, sigma_mm=1.5),
        lambda x, sp: ndi.gaussian_laplace(x, vox(1.5, sp)),
        True,
    ),
    "opening": (
        lambda im: pp.opening(im, radius_mm=2.0),
        lambda x, sp: ndi.grey_opening(x, footprint=pp.footprint(2.0, sp)),
        True,
    ),
    "closing": (
        lambda im: pp.closing(im, radius_mm=2.0, mode="nearest"),
        lambda x, sp: ndi.grey_closing(x, footprint=pp.footprint(2.0, sp), mode="nearest"),
        True,
    ),
    "white_tophat": (
        lambda im: pp.white_tophat(im, radius_mm=2.0),
        lambda x, sp: ndi.white_tophat(x, footprint=pp.footprint(2.0, sp)),
        True,
    ),
    "black_tophat": (
        lambda im: pp.black_tophat(im, radius_mm=2.0),
        lambda x, sp: ndi.black_tophat(x, footprint=pp.footprint(2.0, sp)),
        True,
    ),
    "binary_opening": (
        lambda im: pp.binary_opening(im > -300, radius_mm=2.0),
        lambda x, sp: ndi.binary_opening(x > -300, structure=pp.footprint(2.0, sp)),
        True,
    ),
    "binary_closing": (
        lambda im: pp.binary_closing(im > -300, radius_mm=1.5, iterations=2),
        lambda x, sp: ndi.binary_closing(x > -300, structure=pp.footprint(1.5, sp), iterations=2),
        True,
    ),
    # The periodic modes: on a chunked axis the edge blocks need the halo from the
    # opposite end of the array (scipy's filters treat "wrap" and "grid-wrap" alike).
    "gaussian_wrap": (
        lambda im: pp.gaussian(im, sigma_mm=1.5, mode="wrap"),
        lambda x, sp: ndi.gaussian_filter(x, vox(1.5, sp), mode="wrap"),
        True,
    ),
    "gaussian_grid_wrap_per_axis": (
        lambda im: pp.gaussian(im, sigma_mm=[4.0, 0.8, 2.0], mode="grid-wrap"),
        lambda x, sp: ndi.gaussian_filter(
            x, [4.0 / sp[0], 0.8 / sp[1], 2.0 / sp[2]], mode="grid-wrap"
        ),
        True,
    ),
    "median_wrap": (
        lambda im: pp.median(im, radius_mm=2.0, mode="wrap"),
        lambda x, sp: ndi.median_filter(x, footprint=pp.footprint(2.0, sp), mode="wrap"),
        True,
    ),
    "closing_wrap": (
        lambda im: pp.closing(im, radius_mm=2.0, mode="wrap"),
        lambda x, sp: ndi.grey_closing(x, footprint=pp.footprint(2.0, sp), mode="wrap"),
        True,
    ),
    "white_tophat_grid_wrap": (
        lambda im: pp.white_tophat(im, radius_mm=2.0, mode="grid-wrap"),
        lambda x, sp: ndi.white_tophat(x, footprint=pp.footprint(2.0, sp), mode="grid-wrap"),
        True,
    ),
    "difference_of_gaussians_wrap": (
        lambda im: pp.difference_of_gaussians(im, low_mm=1.0, high_mm=2.5, mode="wrap"),
        lambda x, sp: skfilters.difference_of_gaussians(
            x, low_sigma=vox(1.0, sp), high_sigma=vox(2.5, sp), mode="wrap"
        ),
        True,
    ),
    "laplacian_of_gaussian_wrap": (
        lambda im: pp.laplacian_of_gaussian(im, sigma_mm=1.5, mode="wrap"),
        lambda x, sp: ndi.gaussian_laplace(x, vox(1.5, sp), mode="wrap"),
        True,
    ),
    "ct_window": (
        lambda im: pp.ct_window(im, level=40.0, width=400.0),
        lambda x, sp: np.clip(x, np.float32(-160.0), np.float32(240.0)),
        True,
    ),
    "ct_window_rescale": (
        lambda im: pp.ct_window(im, level=-600.0, width=1500.0, rescale=True),
        lambda x, sp: (np.clip(x, -1350.0, 150.0) + 1350.0) / 1500.0,
        False,
    ),
    "zscore": (
        lambda im: pp.zscore(im),
        lambda x, sp: (x.astype(np.float64) - x.mean(dtype=np.float64)) / x.std(dtype=np.float64),
        False,
    ),
    "percentile_clip": (
        lambda im: pp.percentile_clip(im, low=2.0, high=98.5),
        lambda x, sp: np.clip(x, *np.percentile(x, [2.0, 98.5]).astype(x.dtype)),
        True,
    ),
}


def _assert_matches(got: np.ndarray, ref: np.ndarray, exact: bool) -> None:
    assert got.shape == ref.shape
    if exact:
        assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_filter_equals_whole_array_reference(name: str, ct: tuple, data: st.DataObject) -> None:
    x, spacing = ct
    chunks = data.draw(chunkings(x.shape), label="chunks")
    stage, ref_fn, exact = CASES[name]
    image = as_image(x, spacing, chunks)
    out = stage(image)
    assert out.dims == image.dims
    assert out.attrs == image.attrs
    _assert_matches(out.data.compute(scheduler="synchronous"), ref_fn(x, spacing), exact)


@pytest.mark.parametrize(
    "name", ["gaussian", "median", "closing", "laplacian_of_gaussian", "median_wrap"]
)
def test_2d_image(name: str) -> None:
    x3, spacing3 = pydicom_ct_volume()
    x, spacing = x3[0], spacing3[1:]
    stage, ref_fn, exact = CASES[name]
    out = stage(as_image(x, spacing, (17, (5, 30, 29))))
    assert out.dims == ("y", "x")
    _assert_matches(out.data.compute(scheduler="synchronous"), ref_fn(x, spacing), exact)


def test_chunks_smaller_than_halo_are_merged() -> None:
    """1-voxel chunks with a 6-voxel halo: rechunked inside, result still exact."""
    x, spacing = pydicom_ct_volume()
    image = as_image(x, spacing, (1, (2,) * 32, 64))
    out = pp.gaussian(image, sigma_mm=1.5)  # radius 9 voxels in-plane, 1 in z
    radius = [int(4.0 * 1.5 / s + 0.5) for s in spacing]
    for axis, chunks in enumerate(out.data.chunks):
        assert len(chunks) == 1 or min(chunks) >= radius[axis]
    np.testing.assert_array_equal(
        out.data.compute(scheduler="synchronous"), ndi.gaussian_filter(x, vox(1.5, spacing))
    )


#: Even multi-chunk and uneven chunkings of the 8 × 64 × 64 CT volume.
WRAP_CHUNKS = [(4, 32, 32), ((3, 5), (10, 30, 24), (17, 17, 30))]


@pytest.mark.parametrize("chunks", WRAP_CHUNKS, ids=["multi-chunk", "uneven"])
@pytest.mark.parametrize("mode", ["wrap", "grid-wrap"])
def test_wrap_modes_equal_scipy_on_chunked_axes(mode: str, chunks: tuple) -> None:
    """A periodic halo: the first block's halo is the array's other end, as in scipy."""
    x, spacing = pydicom_ct_volume()
    image = as_image(x, spacing, chunks)
    got = pp.gaussian(image, sigma_mm=1.5, mode=mode).data.compute(scheduler="synchronous")
    np.testing.assert_array_equal(got, ndi.gaussian_filter(x, vox(1.5, spacing), mode=mode))
    fp = pp.footprint(2.0, spacing)
    med = pp.median(image, radius_mm=2.0, mode=mode).data.compute(scheduler="synchronous")
    np.testing.assert_array_equal(med, ndi.median_filter(x, footprint=fp, mode=mode))
    # ... and not what the reflecting edge gives: the case is not vacuous
    assert not np.array_equal(got, ndi.gaussian_filter(x, vox(1.5, spacing), mode="reflect"))


def test_config_chain_mixing_wrap_and_reflect_equals_scipy() -> None:
    cfg = pp.PreprocessConfig(
        steps=(
            pp.GaussianStep(sigma_mm=1.0, mode="wrap"),
            pp.MedianStep(radius_mm=1.5),
            pp.ClosingStep(radius_mm=2.0, mode="wrap"),
        )
    )
    x, spacing = pydicom_ct_volume()
    out = pp.run(as_image(x, spacing, WRAP_CHUNKS[1]), cfg)
    ref = ndi.gaussian_filter(x, vox(1.0, spacing), mode="wrap")
    ref = ndi.median_filter(ref, footprint=pp.footprint(1.5, spacing), mode="reflect")
    ref = ndi.grey_closing(ref, footprint=pp.footprint(2.0, spacing), mode="wrap")
    np.testing.assert_array_equal(out.data.compute(scheduler="synchronous"), ref)


def test_integer_input_is_filtered_as_float32() -> None:
    x, spacing = pydicom_ct_volume()
    xi = x.astype(np.int16)
    out = pp.gaussian(as_image(xi, spacing, (3, 20, 25)), sigma_mm=1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out.data.compute(scheduler="synchronous"),
        ndi.gaussian_filter(xi.astype(np.float32), vox(1.0, spacing)),
    )
    med = pp.median(as_image(xi, spacing, (3, 20, 25)), radius_mm=1.0)
    assert med.dtype == np.int16


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_footprint_is_skimage_ball_and_disk_on_unit_grid(radius: int) -> None:
    np.testing.assert_array_equal(pp.footprint(radius, [1.0, 1.0, 1.0]), skmorph.ball(radius))
    np.testing.assert_array_equal(pp.footprint(radius, [1.0, 1.0]), skmorph.disk(radius))


def test_footprint_anisotropic_physical_radius() -> None:
    spacing = (3.27, 0.976562, 0.976562)
    fp = pp.footprint(3.5, spacing)
    assert fp.shape == (3, 7, 7)
    # independent check: physical distance of every voxel centre from the middle
    zz, yy, xx = np.indices(fp.shape)
    dist = np.sqrt(
        ((zz - 1) * spacing[0]) ** 2 + ((yy - 3) * spacing[1]) ** 2 + ((xx - 3) * spacing[2]) ** 2
    )
    np.testing.assert_array_equal(fp, dist <= 3.5)


def test_dask_percentile_is_exact() -> None:
    import dask.array as da

    x, _ = pydicom_ct_volume()
    rng = np.random.default_rng(1)
    qs = [0.0, 0.5, 1.0, 25.0, 50.0, 73.3, 99.5, 100.0]
    for arr in (
        x,
        x.astype(np.int16),
        rng.normal(size=5000),
        rng.integers(0, 255, 999, dtype=np.uint8),
    ):
        got = pp.dask_percentile(
            da.from_array(arr, chunks=arr.size // 7 or 1 if arr.ndim == 1 else (3, 30, 17)), qs
        )
        vals = got.compute(scheduler="synchronous")
        np.testing.assert_allclose(vals, np.percentile(arr, qs), rtol=1e-12)
        for q in qs:  # order statistics are exact: compare with numpy's 'lower'/'higher'
            lo = np.percentile(arr, q, method="lower")
            hi = np.percentile(arr, q, method="higher")
            v = float(vals[qs.index(q)])
            assert min(lo, hi) <= v <= max(lo, hi)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("target", [1.0, 2.3])
@SETTINGS
@given(data=st.data())
def test_resample_isotropic_equals_scipy(
    order: int, target: float, ct: tuple, data: st.DataObject
) -> None:
    x, spacing = ct
    chunks = data.draw(chunkings(x.shape), label="chunks")
    src = x if order == 1 else (x > -300).astype(np.uint8)
    image = as_image(src, spacing, chunks)
    out = pp.resample_isotropic(image, spacing_mm=target, order=order)
    shape = tuple(
        int(np.floor((n - 1) * s / target + 1e-9)) + 1
        for n, s in zip(x.shape, spacing, strict=True)
    )
    ref = ndi.affine_transform(
        src,
        np.diag([target / s for s in spacing]),
        output_shape=shape,
        order=order,
        mode="nearest",
        output=np.float32 if order else np.uint8,
    )
    got = out.data.compute(scheduler="synchronous")
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    assert out.attrs["spacing"] == [target] * 3
    assert out.attrs["origin"] == image.attrs["origin"]
    assert out.attrs["modality"] == "CT"


@pytest.mark.parametrize("mode", ["wrap", "grid-wrap"])
@pytest.mark.parametrize("chunks", WRAP_CHUNKS, ids=["multi-chunk", "uneven"])
def test_resample_wrap_modes_equal_scipy(mode: str, chunks: tuple) -> None:
    """The last output voxel lands exactly on the last input voxel (z: 7 × 5 mm = 35 / 1 mm;
    y, x: 63 × 0.66 mm = 21 × 1.98 mm), where the periodic mode is reached."""
    x, spacing = pydicom_ct_volume()
    for target in (1.0, 3 * spacing[1]):
        out = pp.resample_isotropic(as_image(x, spacing, chunks), spacing_mm=target, mode=mode)
        ref = ndi.affine_transform(
            x, np.diag([target / s for s in spacing]), output_shape=out.shape, order=1,
            mode=mode, output=np.float32,
        )
        np.testing.assert_array_equal(out.data.compute(scheduler="synchronous"), ref)


def test_resample_keeps_voxel_zero_and_physical_positions() -> None:
    x, spacing = pydicom_ct_volume()
    out = pp.resample_isotropic(as_image(x, spacing, (4, 32, 32)), spacing_mm=2.0, order=1)
    got = out.data.compute(scheduler="synchronous")
    np.testing.assert_array_equal(got[0, 0, 0], x[0, 0, 0])
    # Output voxel (1, 3, 5) sits at 2 mm * index; linear interpolation of the input there.
    pos = [2.0 * j / s for j, s in zip((1, 3, 5), spacing, strict=True)]
    np.testing.assert_allclose(
        got[1, 3, 5], ndi.map_coordinates(x, np.array(pos)[:, None], order=1)[0], rtol=1e-6
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda im: pp.gaussian(im, sigma_mm=-1.0),
        lambda im: pp.gaussian(im, sigma_mm=[1.0, 2.0]),
        lambda im: pp.gaussian(im, sigma_mm=1.0, mode="bogus"),
        lambda im: pp.median(im, radius_mm=float("nan")),
        lambda im: pp.difference_of_gaussians(im, low_mm=3.0, high_mm=1.0),
        lambda im: pp.laplacian_of_gaussian(im, sigma_mm=0.0),
        lambda im: pp.opening(im, radius_mm=-2.0),
        lambda im: pp.binary_closing(im, radius_mm=1.0, iterations=0),
        lambda im: pp.ct_window(im, level=40.0, width=0.0),
        lambda im: pp.percentile_clip(im, low=90.0, high=10.0),
        lambda im: pp.resample_isotropic(im, spacing_mm=1.0, order=3),
        lambda im: pp.resample_isotropic(im, spacing_mm=0.0),
    ],
)
def test_invalid_parameters_raise_config_error(call: Callable) -> None:
    x, spacing = pydicom_ct_volume()
    with pytest.raises(ConfigError):
        call(as_image(x, spacing, 16))


def test_missing_spacing_is_a_config_error() -> None:
    x, _ = pydicom_ct_volume()
    image = as_image(x, (1.0, 1.0, 1.0), 16)
    image.attrs.pop("spacing")
    with pytest.raises(ValueError, match="spacing"):
        pp.gaussian(image, sigma_mm=1.0)
