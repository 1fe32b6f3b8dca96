"""IBSI image processing (medpipe.features.ibsi_processing) and the two-mask hooks."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial.distance import pdist

from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig, compute_features, shape
from medpipe.features.autocorrelation import morans_gearys
from medpipe.features.discretise import discretise_fbs
from medpipe.features.gldzm import gldzm_features
from medpipe.features.ibsi_processing import (
    IBSIProcessing,
    crop_grid,
    filter_outliers,
    ibsi_grid,
    interpolate,
    interpolate_mask,
    process_roi,
    process_roi_lazy,
    resegment_range,
)
from medpipe.features.ivh import ivh_features
from medpipe.features.shape import morphology_features

RNG = np.random.default_rng(11)


def _brute_morans_gearys(image, mask, spacing):
    pos = np.argwhere(mask) * np.asarray(spacing)
    x = image[mask]
    n = x.size
    w = 1.0 / pdist(pos)
    dev = x - x.mean()
    i, j = np.triu_indices(n, k=1)
    ss = np.sum(dev**2)
    return (n * np.sum(w * dev[i] * dev[j]) / (w.sum() * ss),
            (n - 1) * np.sum(w * (x[i] - x[j]) ** 2) / (2 * w.sum() * ss))


# ----------------------------------------------------------------------------- the grid


def test_ibsi_grid_manual_example() -> None:
    """IBSI's example: 4 voxels of 3 mm -> 2 mm: 6 voxels, centres aligned."""
    n_b, start, step = ibsi_grid(4, 3.0, 2.0)
    assert n_b == 6 and step == pytest.approx(2 / 3)
    assert start == pytest.approx(0.5 * (3 - (2 / 3) * 5))
    assert start + step * (n_b - 1) / 2 == pytest.approx((4 - 1) / 2)  # same centre
    assert ibsi_grid(60, 3.0, 2.0)[0] == 90  # an exact ratio adds no voxel
    assert ibsi_grid(204, float(np.float32(0.977)), 2.0)[0] == 100  # ceil(99.65)
    assert ibsi_grid(5, 2.0, 2.0) == (5, 0.0, 1.0)  # same spacing: identity
    with pytest.raises(ConfigError, match="spacings"):
        ibsi_grid(4, 0.0, 2.0)


def test_linear_matches_scipy_regular_grid_interpolator() -> None:
    """Trilinear on IBSI's grid = RegularGridInterpolator at the world positions, the
    positions beyond the input clamped (nearest-boundary padding)."""
    image = RNG.normal(size=(6, 9, 7))
    spacing, new = (3.0, 0.977, 1.3), (2.0, 2.0, 2.0)
    got = interpolate(image, spacing=spacing, new_spacing=new, method="linear")
    axes, pts = [], []
    for n, s, t in zip(image.shape, spacing, new, strict=True):
        n_b = int(np.ceil(n * s / t - 1e-9))
        axes.append(np.arange(n) * s)
        # IBSI: x_b,w = x_a,w + (s_a (n_a - 1) - s_b (n_b - 1)) / 2
        world = (s * (n - 1) - t * (n_b - 1)) / 2 + np.arange(n_b) * t
        pts.append(np.clip(world, 0, (n - 1) * s))
    ref = RegularGridInterpolator(axes, image)(
        np.stack(np.meshgrid(*pts, indexing="ij"), axis=-1))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_in_plane_interpolation_keeps_slices() -> None:
    image = RNG.normal(size=(4, 10, 10))
    got = interpolate(image, spacing=(3.0, 1.0, 1.0), new_spacing=(None, 2.0, 2.0))
    assert got.shape == (4, 5, 5)
    # slice k only depends on input slice k
    one = interpolate(image[1:2], spacing=(3.0, 1.0, 1.0), new_spacing=(None, 2.0, 2.0))
    np.testing.assert_allclose(got[1:2], one, rtol=0, atol=1e-12)


def test_cubic_spline_is_more_accurate_than_linear_on_a_smooth_image() -> None:
    """Tricubic spline against the analytic function, away from the padded border."""
    shape, spacing, new = (20, 30, 30), (3.0, 1.0, 1.0), (1.5, 1.5, 1.5)

    def f(z, y, x):
        return np.sin(y / 4.0) * np.cos(x / 5.0) + 0.5 * np.sin(z / 9.0)

    image = f(*np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)),
                           indexing="ij"))
    errs = {}
    for method in ("linear", "cubic"):
        out = interpolate(image, spacing=spacing, new_spacing=new, method=method)
        pos = [(s * (n - 1) - t * (m - 1)) / 2 + np.arange(m) * t
               for n, s, t, m in zip(shape, spacing, new, out.shape, strict=True)]
        err = np.abs(out - f(*np.meshgrid(*pos, indexing="ij")))
        errs[method] = err[(slice(8, -8),) * 3].max()  # the spline prefilter's border
    assert errs["cubic"] < 5e-4 and errs["cubic"] < errs["linear"] / 20, errs


def test_mask_partial_volume_threshold() -> None:
    """ROI [0, 1] at 2 mm -> 1 mm: positions -0.25, 0.25, 0.75, 1.25 -> 0, .25, .75, 1."""
    mask = np.array([[[False, True]]])
    frac = interpolate(mask.astype(float), spacing=(1, 1, 2), new_spacing=(None, None, 1))
    np.testing.assert_allclose(frac[0, 0], [0.0, 0.25, 0.75, 1.0])
    got = interpolate_mask(mask, spacing=(1, 1, 2), new_spacing=(None, None, 1))
    assert got[0, 0].tolist() == [False, False, True, True]
    got = interpolate_mask(mask, spacing=(1, 1, 2), new_spacing=(None, None, 1),
                           partial_volume=0.25)
    assert got[0, 0].tolist() == [False, True, True, True]  # R >= δ, δ itself included
    with pytest.raises(ConfigError, match="partial_volume"):
        interpolate_mask(mask, spacing=(1, 1, 2), new_spacing=(None, None, 1),
                         partial_volume=0.0)


# ---------------------------------------------------------------------- re-segmentation


def test_resegment_range_and_outliers() -> None:
    image = RNG.normal(0, 100, size=(5, 20, 20))
    image[0, 0, :5] = [5000, -5000, 900, -900, 350]
    mask = RNG.random(image.shape) < 0.8
    mask[0, 0, :5] = True
    got = resegment_range(image, mask, low=-500, high=400)
    assert np.array_equal(got, mask & (image >= -500) & (image <= 400))
    assert np.array_equal(resegment_range(image, mask, low=-500), mask & (image >= -500))
    x = image[mask]
    mu, sd = x.mean(), np.sqrt(np.mean((x - x.mean()) ** 2))  # population σ
    want = mask & (np.abs(image - mu) <= 3 * sd)
    assert np.array_equal(filter_outliers(image, mask, n_sigma=3), want)
    assert not filter_outliers(image, mask)[0, 0, 0] and filter_outliers(image, mask)[0, 0, 4]
    with pytest.raises(ConfigError, match="empty"):
        resegment_range(image, mask, low=1, high=0)
    with pytest.raises(ConfigError, match="shape"):
        filter_outliers(image, mask[:1])


def test_processing_config_validation() -> None:
    cfg = IBSIProcessing(spacing_mm=(2, 2, 2), resegment=(-1000, 400), outlier_sigma=3)
    assert cfg.fbs_min_value == -1000 and cfg.margin_voxels == 2
    assert IBSIProcessing.model_validate_json(cfg.model_dump_json()) == cfg
    assert len(cfg.hash()) == 16
    assert IBSIProcessing(spacing_mm=(2, 2, 2), interpolation="cubic").margin_voxels == 16
    with pytest.raises(ConfigError, match="resegment"):
        IBSIProcessing(resegment=(400, -500))
    with pytest.raises(ConfigError, match="spacing_mm"):
        IBSIProcessing(spacing_mm=(2.0, 2.0))
    with pytest.raises(ConfigError, match="interpolation"):
        IBSIProcessing(interpolation="quintic")


def _blob(shape=(14, 24, 22)):
    image = np.rint(RNG.normal(0, 300, size=shape).cumsum(axis=1) / 4)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    mask = ((zz - 7) / 4.0) ** 2 + ((yy - 12) / 6.0) ** 2 + ((xx - 11) / 5.0) ** 2 <= 1
    return image, mask


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_crop_equals_whole_volume(method: str) -> None:
    """A crop with margin_voxels around the ROI gives the whole volume's voxels."""
    image, mask = _blob()
    image = np.pad(image, ((0, 0), (20, 20), (20, 20)), mode="reflect")
    mask = np.pad(mask, ((0, 0), (20, 20), (20, 20)))
    cfg = IBSIProcessing(spacing_mm=(2.0, 2.0, 2.0), interpolation=method,
                         resegment=(-400, 600))
    spacing = (3.0, 0.8, 1.1)
    whole = process_roi(image, mask, spacing=spacing, config=cfg)
    idx = np.nonzero(mask)
    lo = tuple(max(int(i.min()) - cfg.margin_voxels, 0) for i in idx)
    hi = tuple(min(int(i.max()) + 1 + cfg.margin_voxels, n) for i, n in zip(idx, image.shape,
                                                                              strict=True))
    assert hi[1] < image.shape[1] and lo[2] > 0  # an interior crop in y and x
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    part = process_roi(image[sl], mask[sl], spacing=spacing, config=cfg,
                       crop=(lo, image.shape))
    # where the crop's output grid sits in the whole one
    j0 = []
    for o, n, f, s in zip(lo, (b - a for a, b in zip(lo, hi, strict=True)), image.shape,
                          spacing, strict=True):
        _, start, step = ibsi_grid(f, s, 2.0)
        _, local, _ = crop_grid(o, n, f, s, 2.0)
        j0.append(int(round((local + o - start) / step)))
    out = tuple(slice(j, j + k) for j, k in zip(j0, part.image.shape, strict=True))
    assert part.morphology_mask.sum() == whole.morphology_mask.sum()  # the whole ROI
    assert np.array_equal(part.morphology_mask, whole.morphology_mask[out])
    assert np.array_equal(part.intensity_mask, whole.intensity_mask[out])
    roi = part.morphology_mask
    if method == "linear":
        np.testing.assert_array_equal(part.image, whole.image[out])
    else:  # the crop's spline prefilter differs near the crop's edges, not at the ROI
        np.testing.assert_array_equal(part.image[roi], whole.image[out][roi])


def test_process_roi_and_lazy() -> None:
    image, mask = _blob()
    cfg = IBSIProcessing(spacing_mm=(None, 2.0, 2.0), resegment=(-300, None),
                         outlier_sigma=2.5)
    got = process_roi(image, mask, spacing=(3.0, 1.0, 1.0), config=cfg)
    assert got.spacing == (3.0, 2.0, 2.0) and got.image.shape == (14, 12, 11)
    assert not (got.intensity_mask & ~got.morphology_mask).any()
    assert np.array_equal(got.image, np.rint(got.image))
    inner = resegment_range(got.image, got.morphology_mask, low=-300)
    assert np.array_equal(got.intensity_mask, filter_outliers(got.image, inner, n_sigma=2.5))
    lazy = process_roi_lazy(dask.array.from_array(image, chunks=5), mask,
                            spacing=(3.0, 1.0, 1.0), config=cfg)
    with dask.config.set(scheduler="synchronous"):
        done = lazy.compute()
    assert np.array_equal(done.image, got.image)
    assert np.array_equal(done.intensity_mask, got.intensity_mask)
    with pytest.raises(ConfigError, match="shape"):
        process_roi(image, mask[:, :3], spacing=(3.0, 1.0, 1.0), config=cfg)


# ------------------------------------------------------------ the features' two masks


def test_morans_gearys_fft_matches_pairs() -> None:
    for dims, spacing in [((7, 9, 11), (3.0, 0.977, 1.2)), ((1, 20, 17), (2.0, 1.0, 1.0))]:
        image = RNG.normal(size=dims).cumsum(axis=2)
        mask = RNG.random(dims) < 0.6
        got = morans_gearys(image, mask, spacing=spacing)
        np.testing.assert_allclose(got, _brute_morans_gearys(image, mask, spacing),
                                   rtol=1e-10)
    assert np.isnan(morans_gearys(np.ones((3, 3, 3)), np.ones((3, 3, 3), bool),
                                  spacing=(1, 1, 1))).all()


def test_morphology_of_a_large_roi_has_morans_i(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MAX_AUTOCORRELATION_VOXELS (lowered here to keep the pairs test small) the
    FFT form gives the pairwise values; below it, the pairwise code path does."""
    image, mask = _blob()
    spacing = (2.0, 1.0, 1.0)
    below = morphology_features(mask, spacing=spacing, image=image)
    monkeypatch.setattr(shape, "MAX_AUTOCORRELATION_VOXELS", int(mask.sum()) - 1)
    above = morphology_features(mask, spacing=spacing, image=image)
    want = _brute_morans_gearys(image, mask, spacing)
    for got in (below, above):
        np.testing.assert_allclose([got["morph_morans_i"], got["morph_gearys_c"]], want,
                                   rtol=1e-9)


def test_morphological_and_intensity_masks() -> None:
    """Morphology's shape and GLDZM's distances read the morphological mask, intensity
    features (and the integrated intensity's mean) the intensity mask."""
    image, morph = _blob()
    inten = morph & (image > np.percentile(image[morph], 20))
    cfg = FeatureConfig(families=("firstorder", "morphology", "gldzm"), bin_width=50.0,
                        min_value=-2000.0)
    got = compute_features(image, inten, spacing=(2.0, 1.0, 1.0), config=cfg,
                           morphology_mask=morph)
    shape_only = morphology_features(morph, spacing=(2.0, 1.0, 1.0))
    assert got["morph_volume"] == pytest.approx(shape_only["morph_volume"], rel=1e-12)
    assert got["morph_integrated_intensity"] == pytest.approx(
        image[inten].mean() * shape_only["morph_volume"], rel=1e-12)
    assert got["firstorder_mean"] == pytest.approx(image[inten].mean(), rel=1e-12)
    levels = np.zeros(image.shape, np.int32)
    levels[inten] = discretise_fbs(image[inten], bin_width=50.0, min_value=-2000.0)
    want = gldzm_features(levels, mask=morph, aggregations=cfg.gldzm_aggregations)
    assert {k: got[k] for k in want} == pytest.approx(want, rel=1e-12)
    one_mask = compute_features(image, inten, spacing=(2.0, 1.0, 1.0), config=cfg)
    assert one_mask["gldzm_sde_3d_merged"] != pytest.approx(got["gldzm_sde_3d_merged"])
    with pytest.raises(ConfigError, match="morphology_mask"):
        compute_features(image, inten, spacing=(2.0, 1.0, 1.0), morphology_mask=morph,
                         config=cfg.model_copy(update={"ibsi_processing": IBSIProcessing()}))


def test_ivh_discrete_and_fbs_minimum_from_the_range() -> None:
    image, mask = _blob()
    proc = IBSIProcessing(resegment=(-500, 400))
    cfg = FeatureConfig(families=("histogram", "ivh"), bin_count=32, ivh_discrete=True,
                        ibsi_processing=proc)
    got = compute_features(image, mask, spacing=(1, 1, 1), config=cfg)
    inten = resegment_range(image, mask, low=-500, high=400)
    want = ivh_features(image[inten], min_value=-500)  # HU as they are, G from -500
    assert {k: got[k] for k in want} == pytest.approx(want, rel=1e-12)
    assert got["ih_maximum"] == 32  # the texture still uses 32 bins
    fbs = FeatureConfig(families=("histogram",), bin_width=25.0, ibsi_processing=proc)
    assert fbs.discretisation_min == -500
    got = compute_features(image, mask, spacing=(1, 1, 1), config=fbs)
    assert got["ih_minimum"] == np.floor((image[inten].min() + 500) / 25) + 1
    with pytest.raises(ConfigError, match="ivh_discrete"):
        FeatureConfig(families=("ivh",), ivh_discrete=True, ivh_bin_count=100)
