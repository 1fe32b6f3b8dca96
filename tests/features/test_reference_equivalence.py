"""Features against independent references (scipy, numpy, scikit-image, brute force).

These run without the shared data, on pydicom's bundled CT slice and skimage's images.
"""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy import ndimage, stats
from skimage import data
from skimage.color import rgb2hsv
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from medpipe.errors import ConfigError
from medpipe.features import (
    discretise_fbn,
    discretise_fbs,
    discretise_image,
    glcm_features,
    histogram_features,
    hsv_features,
    laplacian_variance,
    lbp_features,
    morphology_features,
    regionprops_features,
    statistics_features,
)
from medpipe.features.glcm import DIRECTIONS_3D, glcm_feature_stack, glcm_matrix


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _levels(img: np.ndarray, n: int) -> np.ndarray:
    return discretise_fbn(img, bin_count=n)


# ------------------------------------------------------------------ discretisation


def test_fbn_definition(ct: np.ndarray) -> None:
    d = discretise_fbn(ct, bin_count=16)
    assert d.min() == 1 and d.max() == 16
    ref = np.floor(16 * (ct - ct.min()) / (ct.max() - ct.min())) + 1
    ref[ct == ct.max()] = 16
    np.testing.assert_array_equal(d, ref)
    # monotone: a higher intensity never gets a lower level
    order = np.argsort(ct, axis=None)
    assert np.all(np.diff(d.ravel()[order]) >= 0)


def test_fbs_definition(ct: np.ndarray) -> None:
    d = discretise_fbs(ct, bin_width=25.0)
    np.testing.assert_array_equal(d, np.floor((ct - ct.min()) / 25.0).astype(int) + 1)
    d2 = discretise_fbs(ct, bin_width=25.0, min_value=-1000.0)
    np.testing.assert_array_equal(d2, np.floor((ct + 1000.0) / 25.0).astype(int) + 1)


def test_discretise_image_rejects_both_and_masks(ct: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        discretise_image(ct, ct > 0, bin_width=1.0, bin_count=4)
    m = ct > np.median(ct)
    d = discretise_image(ct, m, bin_count=8)
    assert np.all(d[~m] == 0) and d[m].min() == 1 and d[m].max() == 8


# ------------------------------------------------------------------ first order


def test_statistics_match_numpy_scipy(ct: np.ndarray) -> None:
    x = ct[ct > ct.mean()]
    f = statistics_features(x)
    p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
    assert f["firstorder_mean"] == pytest.approx(np.mean(x))
    assert f["firstorder_variance"] == pytest.approx(np.var(x))
    assert f["firstorder_skewness"] == pytest.approx(stats.skew(x))
    assert f["firstorder_kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=True))
    assert f["firstorder_median"] == pytest.approx(np.median(x))
    assert f["firstorder_iqr"] == pytest.approx(stats.iqr(x))
    assert f["firstorder_range"] == pytest.approx(np.ptp(x))
    assert f["firstorder_p10"] == pytest.approx(p10)
    assert f["firstorder_mad"] == pytest.approx(np.mean(np.abs(x - x.mean())))
    sub = x[(x >= p10) & (x <= p90)]
    assert f["firstorder_robust_mad"] == pytest.approx(np.mean(np.abs(sub - sub.mean())))
    assert f["firstorder_median_ad"] == pytest.approx(np.mean(np.abs(x - np.median(x))))
    assert f["firstorder_cov"] == pytest.approx(stats.variation(x))
    assert f["firstorder_qcod"] == pytest.approx((p75 - p25) / (p75 + p25))
    assert f["firstorder_energy"] == pytest.approx(np.sum(x**2))
    assert f["firstorder_rms"] == pytest.approx(np.sqrt(np.mean(x**2)))


def test_histogram_entropy_uniformity(ct: np.ndarray) -> None:
    lv = _levels(ct, 32).ravel()
    f = histogram_features(lv, n_levels=32)
    p = np.bincount(lv, minlength=33)[1:] / lv.size
    assert f["ih_entropy"] == pytest.approx(stats.entropy(p, base=2))
    assert f["ih_uniformity"] == pytest.approx(np.sum(p**2))
    assert f["ih_mode"] == np.argmax(p) + 1
    grad = np.gradient(p * lv.size)
    assert f["ih_max_gradient"] == pytest.approx(grad.max())
    assert f["ih_min_gradient_level"] == np.argmin(grad) + 1


# ------------------------------------------------------------------ GLCM


# skimage angle -> our in-plane offset (skimage pairs (r, c) with (r + sin, c + cos))
_ANGLES = {0.0: (0, 0, 1), np.pi / 4: (0, 1, 1), np.pi / 2: (0, 1, 0), 3 * np.pi / 4: (0, 1, -1)}


@pytest.mark.parametrize("angle", list(_ANGLES))
def test_glcm_matches_skimage(angle: float) -> None:
    img = data.camera()
    ng = 16
    lv = _levels(img.astype(float), ng)
    ref = graycomatrix(lv - 1, [1], [angle], levels=ng, symmetric=True)[:, :, 0, 0]
    ours = glcm_matrix(lv[None], _ANGLES[angle], n_levels=ng, per_slice=True)[0]
    np.testing.assert_array_equal(ours, ref)

    f = glcm_feature_stack(ours)
    refp = graycomatrix(lv - 1, [1], [angle], levels=ng, symmetric=True, normed=True)
    assert f["contrast"] == pytest.approx(graycoprops(refp, "contrast")[0, 0])
    assert f["dissimilarity"] == pytest.approx(graycoprops(refp, "dissimilarity")[0, 0])
    assert f["inv_diff_moment"] == pytest.approx(graycoprops(refp, "homogeneity")[0, 0])
    assert f["asm"] == pytest.approx(graycoprops(refp, "ASM")[0, 0])
    assert f["correlation"] == pytest.approx(graycoprops(refp, "correlation")[0, 0])
    assert f["joint_entropy"] == pytest.approx(graycoprops(refp, "entropy")[0, 0] / np.log(2))


def _brute_force_glcm_3d(levels: np.ndarray, ng: int) -> np.ndarray:
    """Loop over every voxel and every one of its 26 neighbours (each pair counted both ways)."""
    m = np.zeros((ng, ng))
    nz, ny, nx = levels.shape
    offs = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]
    for z, y, x in itertools.product(range(nz), range(ny), range(nx)):
        a = levels[z, y, x]
        if a == 0:
            continue
        for dz, dy, dx in offs:
            zz, yy, xx = z + dz, y + dy, x + dx
            if 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx and levels[zz, yy, xx] > 0:
                m[a - 1, levels[zz, yy, xx] - 1] += 1
    return m


def test_glcm_3d_merged_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    img = rng.normal(size=(5, 7, 6))
    mask = ndimage.binary_dilation(rng.random(img.shape) > 0.7)
    lv = discretise_image(img, mask, bin_count=5)
    merged = sum(glcm_matrix(lv, o, n_levels=5) for o in DIRECTIONS_3D)
    np.testing.assert_array_equal(merged, _brute_force_glcm_3d(lv, 5))
    f = glcm_features(lv, n_levels=5, aggregations=("3d_merged",))
    p = merged / merged.sum()
    i, j = np.indices(p.shape) + 1
    assert f["glcm_contrast_3d_merged"] == pytest.approx(np.sum((i - j) ** 2 * p))
    assert f["glcm_autocorrelation_3d_merged"] == pytest.approx(np.sum(i * j * p))


# ------------------------------------------------------------------ shape


def test_morphology_of_a_sphere() -> None:
    r, s = 12.0, 1.0
    z, y, x = np.mgrid[-15:16, -15:16, -15:16] * s
    ball = x**2 + y**2 + z**2 <= r**2
    f = morphology_features(ball, spacing=(s, s, s), image=ball.astype(float))
    assert f["morph_voxel_volume"] == ball.sum()
    assert f["morph_volume"] == pytest.approx(4 / 3 * np.pi * r**3, rel=0.03)
    assert f["morph_surface_area"] == pytest.approx(4 * np.pi * r**2, rel=0.1)
    assert f["morph_sphericity"] > 0.9
    assert f["morph_max_diameter"] == pytest.approx(2 * r, rel=0.05)
    assert f["morph_elongation"] == pytest.approx(1.0, abs=1e-6)
    assert f["morph_com_shift"] == pytest.approx(0.0, abs=1e-9)


def test_morphology_respects_anisotropic_spacing() -> None:
    box = np.zeros((6, 10, 10), bool)
    box[1:5, 2:8, 2:8] = True
    f = morphology_features(box, spacing=(3.0, 0.5, 0.5))
    assert f["morph_voxel_volume"] == pytest.approx(box.sum() * 3.0 * 0.25)
    # the marching-cubes mesh cuts the box's edges and corners only: close to the voxel volume
    assert f["morph_volume"] == pytest.approx(4 * 3.0 * 6 * 0.5 * 6 * 0.5, rel=0.15)
    assert f["morph_volume"] < f["morph_voxel_volume"]
    # the principal axes follow the physical extent: z (4 × 3 mm) is the longest side
    assert f["morph_major_axis"] > f["morph_minor_axis"]


def test_regionprops_summary() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:15] = True
    mask[20:35, 30:55] = True
    f = regionprops_features(mask, spacing=(0.5, 0.5))
    assert f["region_n_components"] == 2
    assert f["region_total_area"] == pytest.approx(mask.sum() * 0.25)
    assert f["region_area"] == pytest.approx(15 * 25 * 0.25)
    assert f["region_extent"] == pytest.approx(1.0)


# ------------------------------------------------------------------ texture and colour


def test_lbp_matches_skimage() -> None:
    img = data.camera()
    f = lbp_features(img[None].astype(float), None, points=8, radius=1)
    codes = local_binary_pattern(img, 8, 1, method="uniform")
    ref = np.bincount(codes.astype(int).ravel(), minlength=10) / codes.size
    np.testing.assert_allclose([f[f"lbp_p8_bin{k}"] for k in range(10)], ref)


def test_laplacian_variance_matches_scipy() -> None:
    img = data.camera().astype(float)
    assert laplacian_variance(img) == pytest.approx(np.var(ndimage.laplace(img)))
    blurred = ndimage.gaussian_filter(img, 2)
    assert laplacian_variance(blurred) < laplacian_variance(img)


def test_hsv_matches_skimage() -> None:
    rgb = data.astronaut()
    f = hsv_features(rgb, bins=4)
    hsv = rgb2hsv(rgb).reshape(-1, 3)
    for k, c in enumerate("hsv"):
        assert f[f"hsv_{c}_mean"] == pytest.approx(hsv[:, k].mean())
        assert f[f"hsv_{c}_skewness"] == pytest.approx(stats.skew(hsv[:, k]))
        h = np.histogram(hsv[:, k], bins=4, range=(0, 1))[0] / len(hsv)
        np.testing.assert_allclose([f[f"hsv_{c}_bin{b}"] for b in range(4)], h)
