"""MONOCHROME1 images are inverted to MONOCHROME2 on ingest (``max + min - x``).

Real files: pydicom ships three computed radiographs stored as MONOCHROME1 (the
``dicomdirtests`` CR series); real MONOCHROME2 CT / MR slices re-headered as MONOCHROME1
(native and RLE-compressed) cover signed data, a VOI window and the decoder path.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from medpipe.io.dicom import read_dicom_series
from medpipe.io.dicom.frames import monochrome1_to_2

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
CR_FILES = sorted(
    p.relative_to(PYDICOM_FILES).as_posix()
    for p in (PYDICOM_FILES / "dicomdirtests" / "77654033").glob("CR*/*")
)


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _inverted(ds: pydicom.Dataset) -> np.ndarray:
    """The MONOCHROME2 reading of a MONOCHROME1 slice, from pydicom's pixel array."""
    x = ds.pixel_array.astype(np.int64)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    return hi + lo - x


def test_pydicom_ships_monochrome1_crs() -> None:
    assert len(CR_FILES) == 3
    assert {str(_read(PYDICOM_FILES / r).PhotometricInterpretation) for r in CR_FILES} == {
        "MONOCHROME1"
    }


@pytest.mark.parametrize("rel", CR_FILES)
def test_real_monochrome1_cr_is_inverted(rel: str) -> None:
    ds = _read(PYDICOM_FILES / rel)
    series = read_dicom_series(PYDICOM_FILES, [rel])
    expected = _inverted(ds)
    slope = float(ds.get("RescaleSlope", 1.0))
    inter = float(ds.get("RescaleIntercept", 0.0))
    expected = expected * slope + inter
    assert series.data.shape == (1, *ds.pixel_array.shape)
    np.testing.assert_array_equal(series.data[0], expected.astype(series.data.dtype))
    if slope == 1.0 and inter == 0.0:
        assert series.data.dtype == ds.pixel_array.dtype  # the stored dtype is kept
    # the brightest pixel of the MONOCHROME2 reading is the darkest of pydicom's array
    assert np.argmax(series.data[0]) == np.argmin(ds.pixel_array)
    assert series.header["PhotometricInterpretation"] == "MONOCHROME2"
    assert "MONOCHROME1 inverted" in series.header["photometric_converted"]


def _as_monochrome1(src: Path, dst: Path, *, rle: bool = False, window: bool = False) -> str:
    ds = _read(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    if window:
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
    if rle:
        ds.compress(RLELossless)
    dst.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst / "m1.dcm", enforce_file_format=True)
    return f"{dst.name}/m1.dcm"


@pytest.mark.parametrize("rle", [False, True], ids=["native", "rle"])
def test_reheadered_signed_mr_is_inverted(tmp_path: Path, rle: bool) -> None:
    src = Path(get_testdata_file("MR_small.dcm"))
    rel = _as_monochrome1(src, tmp_path / "mr", rle=rle)
    ds = _read(tmp_path / rel)
    assert int(ds.PixelRepresentation) == 1
    series = read_dicom_series(tmp_path, [rel])
    original = _read(src).pixel_array
    np.testing.assert_array_equal(series.data[0], _inverted(ds).astype(original.dtype))
    # a MONOCHROME2 image is left alone
    plain = read_dicom_series(src.parent, [src.name])
    np.testing.assert_array_equal(plain.data[0], original)
    assert "photometric_converted" not in plain.header


def test_ct_window_follows_the_inversion(tmp_path: Path) -> None:
    src = Path(get_testdata_file("CT_small.dcm"))
    rel = _as_monochrome1(src, tmp_path / "ct", window=True)
    ds = _read(tmp_path / rel)
    series = read_dicom_series(tmp_path, [rel])
    slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    expected = _inverted(ds) * slope + inter
    np.testing.assert_array_equal(series.data[0], expected.astype(np.float32))
    bits = int(ds.BitsStored)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if ds.PixelRepresentation else (
        0, (1 << bits) - 1
    )
    # A voxel at the old window centre c lands on the new one: the same display.
    centre = series.header["WindowCenter"]
    assert centre == pytest.approx(slope * (lo + hi) + 2 * inter - 40.0)
    assert series.header["WindowWidth"] == 400.0


def test_invert_clips_stray_high_bits() -> None:
    x = np.array([0, 1, 4095, 4096, 65535], dtype=np.uint16)  # 12 bits stored
    np.testing.assert_array_equal(monochrome1_to_2(x, 0, 4095), [4095, 4094, 0, 0, 0])
    s = np.array([-2048, -1, 0, 2047], dtype=np.int16)
    np.testing.assert_array_equal(monochrome1_to_2(s, -2048, 2047), [2047, 0, -1, -2048])
    f = np.array([0.5, 1.0, 2.5], dtype=np.float32)
    np.testing.assert_array_equal(
        monochrome1_to_2(f, float("nan"), float("nan")), np.float32([2.5, 2.0, 0.5])
    )
    assert x.tolist() == [0, 1, 4095, 4096, 65535]  # the input is not changed
