"""IBSI-1 CT phantom, configurations A–E: every reference row against medpipe.

For each configuration the phantom goes through IBSI's processing
(:func:`medpipe.features.ibsi_processing.process_roi`: centre-aligned interpolation,
rounding, ROI thresholded at 0.5, range re-segmentation, 3σ outlier filtering) and then
through every family medpipe has (first order, intensity histogram, IVH, GLCM, GLRLM,
GLSZM, GLDZM, NGTDM, NGLDM, morphology, local/global intensity peaks) with the
intensity mask, the morphological mask for morphology and GLDZM distances.  Settings
per configuration: :func:`tests.features._ibsi.ct_config`.

What passes: all 1321 rows of ``config. A`` … ``config. E`` that have a published value
(346 each for A and B, 210 each for C, D and E, less config C's compactness 1, whose
value IBSI did not publish), each within its published tolerance (rows quoted without a
tolerance: half a unit of the last quoted digit).  The test asserts the issue's bar,
≥ 95 % of the mapped rows overall and per configuration, prints the out-of-tolerance
table (run with ``-s`` or ``-rA``) and lists the unmapped rows (none today).

Why the IBSI grid: :func:`test_origin_aligned_grid_fails_config_c` interpolates with
medpipe's pipeline convention (:mod:`medpipe.preprocess.resample`: origin-aligned,
``floor``-sized) instead, and a third of configuration C's rows (68 of 209) leave
their tolerance.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage as ndi

from medpipe.features import compute_features, extract
from medpipe.features.ibsi_processing import ProcessedROI, resegment_range
from medpipe.preprocess.resample import output_shape
from tests.features import _ibsi

_FAMILIES = (
    "Morphological features",
    "Local intensity features",
    "Intensity-based statistical features",
    "Intensity histogram features",
    "Intensity-volume histogram features",
    "Grey level co-occurrence based features",
    "Grey level run length based features",
    "Grey level size zone based features",
    "Grey level distance zone based features",
    "Neighbourhood grey tone difference based features",
    "Neighbouring grey level dependence based features",
)


@pytest.fixture(scope="module")
def ct_phantom(shared_data: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    d = shared_data / "reference" / "ibsi1_ct_phantom"
    if not (d / "image" / "phantom.nii.gz").is_file():
        pytest.skip(f"IBSI CT phantom not found under {d}")
    return _ibsi.load_ct_phantom(shared_data)


@pytest.fixture(scope="module")
def processed(ct_phantom: tuple) -> dict[str, ProcessedROI]:
    return {c: _ibsi.ct_processed(ct_phantom, c) for c in _ibsi.CT_CONFIGS}


@pytest.fixture(scope="module")
def ct_results(
    shared_data: Path, processed: dict[str, ProcessedROI]
) -> tuple[dict[str, list[_ibsi.Row]], dict[str, dict[str, float]]]:
    csv_path = shared_data / "reference" / "ibsi1_reference_values.csv"
    rows = {c: _ibsi.ct_rows(csv_path, c) for c in _ibsi.CT_CONFIGS}
    feats = {c: _ibsi.ct_features_of(processed[c], c) for c in _ibsi.CT_CONFIGS}
    return rows, feats


def test_ct_phantom_geometry(ct_phantom: tuple) -> None:
    image, mask, spacing = ct_phantom
    assert image.shape == (60, 201, 204)
    assert spacing[0] == 3.0 and spacing[1] == spacing[2] == pytest.approx(0.977)
    assert int(mask.sum()) == 125256


def test_ct_phantom_configurations(ct_results: tuple) -> None:
    """≥ 95 % of the mapped rows of A–E within tolerance; print the rest."""
    rows, feats = ct_results
    text, failed, unmapped = _ibsi.ct_table(rows, feats)
    n_rows = sum(len(v) for v in rows.values())
    mapped = n_rows - len(unmapped)
    print(f"\nIBSI CT phantom A-E: {n_rows} rows, {mapped} mapped, {len(failed)} out of tolerance")
    print(text)
    for letter, r in unmapped:
        print(f"unmapped: config {letter}: {r.family} / {r.feature} [{r.aggregation}]")
    # every family and both aggregations styles are present for every configuration
    for letter, rs in rows.items():
        families = {r.family for r in rs}
        assert families == set(_FAMILIES), (letter, set(_FAMILIES) ^ families)
        bad = [r.id for c, r, _ in failed if c == letter]
        n_mapped = sum(1 for r in rs if r.name is not None)
        assert n_mapped - len(bad) >= 0.95 * n_mapped, (letter, bad)
    assert mapped >= 1300  # 1321 rows with a published value, all mapped today
    assert len(failed) <= 0.05 * mapped, text


def test_ct_phantom_every_row_today(ct_results: tuple) -> None:
    """Stricter than the issue's 95 %: every row passes today, all but one at less than
    half their tolerance (config A's QCOD is 1/22 = 0.04545 against a quoted 0.0455), so
    a row that leaves its tolerance is a regression, not noise."""
    rows, feats = ct_results
    text, failed, _ = _ibsi.ct_table(rows, feats)
    assert not failed, "\n" + text


@pytest.mark.parametrize(
    ("letter", "shape", "n_morph"),
    [("A", (60, 201, 204), 125256), ("B", (60, 99, 100), None), ("C", (90, 99, 100), None)],
)
def test_ct_phantom_grids(
    processed: dict[str, ProcessedROI], letter: str, shape: tuple, n_morph: int | None
) -> None:
    """IBSI's grid sizes: ceil(n s / 2 mm) per interpolated axis; A keeps the ROI."""
    processing = _ibsi.ct_config(letter).ibsi_processing
    roi = processed[letter]
    assert roi.image.shape == shape == roi.morphology_mask.shape
    assert not (roi.intensity_mask & ~roi.morphology_mask).any()
    if n_morph is not None:
        assert int(roi.morphology_mask.sum()) == n_morph
    lo, hi = processing.resegment
    vals = roi.image[roi.intensity_mask]
    assert vals.min() >= lo and vals.max() <= hi
    assert np.array_equal(vals, np.rint(vals))


def test_origin_aligned_grid_fails_config_c(shared_data: Path, ct_phantom: tuple) -> None:
    """medpipe's pipeline resampling convention (origin-aligned, floor-sized) is not IBSI's:
    with it, configuration C misses many rows, so the IBSI grid is what makes them pass."""
    image, mask, spacing = ct_phantom
    shape = output_shape(image.shape, spacing, 2.0)
    ratio = [2.0 / s for s in spacing]
    img = np.rint(ndi.affine_transform(image, ratio, 0.0, output_shape=shape, order=1,
                                       mode="nearest"))
    morph = ndi.affine_transform(mask.astype(np.float64), ratio, 0.0, output_shape=shape,
                                 order=1, mode="nearest") >= 0.5
    config = _ibsi.ct_config("C").model_copy(update={"ibsi_processing": None,
                                                     "min_value": -1000.0})
    feats = compute_features(
        img, resegment_range(img, morph, low=-1000, high=400), spacing=(2.0, 2.0, 2.0),
        config=config, morphology_mask=morph,
    )
    rows = _ibsi.ct_rows(shared_data / "reference" / "ibsi1_reference_values.csv", "C")
    _, failed, _ = _ibsi.ct_table({"C": rows}, {"C": feats})
    assert len(failed) > 0.1 * len(rows)


@pytest.mark.parametrize("letter", ["C", "E"])
def test_lazy_extract_matches_whole_image(ct_phantom: tuple, letter: str) -> None:
    """``extract`` (per-ROI crops of a chunked image, IBSI's grid restricted to the crop)
    gives the features of the whole image's processing: trilinear (C) and tricubic (E)."""
    image, mask, spacing = ct_phantom
    config = _ibsi.ct_config(letter)
    want = compute_features(image, mask, spacing=spacing, config=config)
    img = xr.DataArray(da.from_array(image, chunks=(20, 64, 64)), dims=("z", "y", "x"),
                       attrs={"spacing": list(spacing)})
    roi = xr.DataArray(da.from_array(mask, chunks=(20, 64, 64)), dims=("z", "y", "x"))
    ds = extract([("pat1", img, {"gtv": roi})], config=config)
    with dask.config.set(scheduler="synchronous"):
        got = ds["features"].values[0]
    names = config.feature_names()
    assert list(ds["feature"].values) == names
    np.testing.assert_allclose(got, [want[n] for n in names], rtol=1e-9, atol=1e-12)
