"""Local and global intensity peaks (IBSI 3.2) against a brute-force sphere mean, and the
four neighbourhood families through the lazy distributed extraction, which must crop the
sphere's reach around the ROI."""

from __future__ import annotations

import itertools
from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from medpipe.features import FeatureConfig, compute_features, extract
from medpipe.features.peaks import RADIUS_MM, peak_features


def _reference(img: np.ndarray, roi: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """For every ROI voxel, the mean of all image voxels within 6.2 mm (loops only)."""
    coords = list(itertools.product(*(range(n) for n in img.shape)))
    peak = {}
    for k in coords:
        if not roi[k]:
            continue
        vals = [
            img[q]
            for q in coords
            if sum(((a - b) * s) ** 2 for a, b, s in zip(q, k, spacing, strict=True))
            <= RADIUS_MM**2
        ]
        peak[k] = sum(vals) / len(vals)
    vmax = max(img[k] for k in peak)
    return {
        "peaks_local": max(v for k, v in peak.items() if img[k] == vmax),
        "peaks_global": max(peak.values()),
    }


def test_radius_is_the_1cc_sphere() -> None:
    assert 4 / 3 * np.pi * (RADIUS_MM / 10) ** 3 == pytest.approx(1.0)


@pytest.mark.parametrize("spacing", [(2.0, 1.5, 1.0), (4.0, 2.0, 2.0)])
def test_peaks_match_brute_force(spacing: tuple[float, ...]) -> None:
    rng = np.random.default_rng(7)
    img = rng.normal(100, 20, size=(5, 7, 8)).round()
    roi = rng.random(img.shape) < 0.3
    top = np.unravel_index(np.argmax(np.where(roi, img, -np.inf)), img.shape)
    twin = (4, 0, 0) if top != (4, 0, 0) else (0, 6, 7)
    roi[twin] = True
    img[twin] = img[top]  # two maxima: the higher local peak wins
    got = peak_features(img, roi, spacing=spacing)
    assert got == pytest.approx(_reference(img, roi, spacing), rel=1e-10)


@pytest.mark.parametrize("spacing", [(4.0, 2.0, 2.0), (3.0, 1.0, 1.5)])
def test_peaks_of_an_roi_inside_the_image_match_brute_force(
    spacing: tuple[float, ...],
) -> None:
    """Every ROI voxel's sphere inside the image (the path that counts no voxels)."""
    rng = np.random.default_rng(5)
    img = rng.normal(0, 50, size=(9, 15, 13)).round()
    half = [int(RADIUS_MM // s) for s in spacing]
    roi = np.zeros(img.shape, bool)
    inner = tuple(slice(h, n - h) for h, n in zip(half, img.shape, strict=True))
    roi[inner] = rng.random(roi[inner].shape) < 0.4
    got = peak_features(img, roi, spacing=spacing)
    assert got == pytest.approx(_reference(img, roi, spacing), rel=1e-10)


def test_peaks_empty_roi_and_2d_image() -> None:
    cfg = FeatureConfig(families=("peaks",))
    img = np.arange(60, dtype=float).reshape(1, 6, 10)
    empty = compute_features(img, np.zeros(img.shape, bool), spacing=(1, 1, 1), config=cfg)
    assert list(empty) == ["peaks_local", "peaks_global"]
    assert all(np.isnan(v) for v in empty.values())
    roi = np.zeros(img.shape, bool)
    roi[0, 2:4, 3:6] = True
    got = compute_features(img[0], roi[0], spacing=(1, 1, 1), config=cfg)
    assert got == pytest.approx(_reference(img, roi, (1.0, 1.0, 1.0)))


def test_distributed_extraction_reads_the_sphere_beyond_the_roi() -> None:
    """The crop around a small ROI must hold the 6.2 mm sphere, not only crop_margin voxels."""
    rng = np.random.default_rng(11)
    vol = rng.normal(0, 50, size=(12, 30, 30))
    vol[6, 15, 22] = 2000.0  # a hot voxel 5 mm outside the ROI, inside the sphere
    roi = np.zeros(vol.shape, bool)
    roi[5:8, 13:17, 14:18] = True
    spacing = (2.0, 1.0, 1.0)
    cfg = FeatureConfig(families=("peaks", "ngtdm", "ngldm", "ivh"), bin_count=8, crop_margin=1)
    image = xr.DataArray(
        da.from_array(vol, chunks=(5, 11, 13)), dims=("z", "y", "x"), attrs={"spacing": spacing}
    )
    mask = xr.DataArray(da.from_array(roi, chunks=(4, 16, 16)), dims=("z", "y", "x"))
    ds = extract([("s", image, {"roi": mask})], config=cfg).compute()
    got = dict(zip(ds.feature.values, ds.features.values[0], strict=True))
    want = compute_features(vol, roi, spacing=spacing, config=cfg)
    assert want["peaks_global"] == pytest.approx(_reference(vol, roi, spacing)["peaks_global"])
    assert list(got) == list(want) and len(got) == 2 + 15 + 51 + 7
    assert got == pytest.approx(want, rel=1e-12)  # every family, through the lazy path


def test_ibsi_ct_phantom_config_a(shared_data: Path) -> None:
    """IBSI's CT phantom, configuration A (no resampling, ROI re-segmented to
    [-500, 400] HU): local peak -277 ± 10, global peak 189 ± 5 (moderate consensus)."""
    d = shared_data / "reference" / "ibsi1_ct_phantom"
    if not (d / "image" / "phantom.nii.gz").is_file():
        pytest.skip(f"IBSI CT phantom not found under {d}")
    img = nib.load(d / "image" / "phantom.nii.gz")
    # NIfTI (x, y, z) -> (z, y, x); IBSI: round the intensities to integers
    image = np.rint(np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float64))
    mask = np.transpose(np.asanyarray(nib.load(d / "mask" / "mask.nii.gz").dataobj), (2, 1, 0))
    roi = (mask > 0) & (image >= -500) & (image <= 400)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3][::-1])
    assert spacing[0] == 3.0 and spacing[1] == pytest.approx(0.977)
    got = peak_features(image, roi, spacing=spacing)
    assert abs(got["peaks_local"] - -277) <= 10 and abs(got["peaks_global"] - 189) <= 5, got
