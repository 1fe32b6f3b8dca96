"""The modality rescale coder: round trip, attributes, and the float64 reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydicom.data import get_testdata_file

from medpipe.errors import InvalidSourceError
from medpipe.io.coding import ModalityRescale
from medpipe.io.dicom import read_dicom_series

STORED = st.sampled_from([np.int8, np.uint8, np.int16, np.uint16])
SLOPES = st.one_of(
    st.just(1.0),
    st.integers(1, 8).map(float),
    st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False),
)
INTERCEPTS = st.one_of(
    st.just(0.0),
    st.integers(-2048, 2048).map(float),
    st.floats(-4096, 4096, allow_nan=False, allow_infinity=False),
)


@st.composite
def stored_and_coder(draw: st.DrawFn) -> tuple[np.ndarray, ModalityRescale]:
    dtype = draw(STORED)
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=4, max_side=5))
    stored = draw(hnp.arrays(dtype, shape))
    n = shape[0]
    per_plane = draw(st.booleans())
    k = n if per_plane else 1
    slope = draw(st.lists(SLOPES, min_size=k, max_size=k))
    intercept = draw(st.lists(INTERCEPTS, min_size=k, max_size=k))
    return stored, ModalityRescale(slope, intercept, stored_dtype=np.dtype(dtype).name)


def _reference(stored: np.ndarray, coder: ModalityRescale) -> np.ndarray:
    """The former computation: the whole volume in float64, rounded to float32 once."""
    if coder.identity:
        return stored
    n = stored.shape[0]
    shape = (n,) + (1,) * (stored.ndim - 1)
    slope = np.broadcast_to(np.asarray(coder.slope), (n,)).reshape(shape)
    inter = np.broadcast_to(np.asarray(coder.intercept), (n,)).reshape(shape)
    scaled = stored.astype(np.float64)
    scaled *= slope
    scaled += inter
    return scaled.astype(np.float32)


@settings(max_examples=300, deadline=None)
@given(stored_and_coder())
def test_round_trip(case: tuple[np.ndarray, ModalityRescale]) -> None:
    stored, coder = case
    x = coder.decode(stored)
    assert x.dtype == coder.decoded_dtype
    encoded = coder.encode(x)
    assert encoded.dtype == stored.dtype
    np.testing.assert_array_equal(encoded, stored)  # encode inverts decode ...
    np.testing.assert_array_equal(coder.decode(encoded), x)  # ... so decode(encode(x)) == x


@settings(max_examples=300, deadline=None)
@given(stored_and_coder())
def test_decode_equals_float64_reference(case: tuple[np.ndarray, ModalityRescale]) -> None:
    stored, coder = case
    got = coder.decode(stored)
    ref = _reference(stored, coder)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


@given(stored_and_coder())
def test_attrs_describe_the_coder(case: tuple[np.ndarray, ModalityRescale]) -> None:
    stored, coder = case
    again = ModalityRescale.from_attrs(coder.attrs, stored_dtype=coder.stored_dtype)
    np.testing.assert_array_equal(again.decode(stored), coder.decode(stored))
    assert coder.attrs["applied"] is (not coder.identity)


def test_identity_keeps_the_stored_array_and_dtype() -> None:
    stored = np.arange(6, dtype=np.uint16).reshape(1, 2, 3)
    coder = ModalityRescale(1.0, 0.0, type="US", stored_dtype="uint16")
    assert coder.decode(stored) is stored
    assert coder.attrs == {"slope": 1.0, "intercept": 0.0, "type": "US", "applied": False}


def test_per_plane_values_and_range_checks() -> None:
    coder = ModalityRescale([1.0, 2.0], [-1024.0, 0.0], type="HU", stored_dtype="int16")
    assert coder.attrs["slope"] == [1.0, 2.0] and coder.attrs["intercept"] == [-1024.0, 0.0]
    with pytest.raises(InvalidSourceError, match="2 slopes"):
        coder.decode(np.zeros((3, 2, 2), np.int16))
    with pytest.raises(InvalidSourceError, match="do not fit int16"):
        coder.encode(np.full((2, 1, 1), 1e6, np.float32))


def test_ct_series_is_float32_equal_to_float64_reference(tmp_path: Path) -> None:
    """CT with RescaleSlope 1 / intercept -1024: float32 (not float64), values as before."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    series = read_dicom_series(Path(path).parent, [Path(path).name])
    assert series.data.dtype == np.float32
    ref = (ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope)) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(series.data[0], ref.astype(np.float32))
    assert series.rescale == {
        "slope": float(ds.RescaleSlope),
        "intercept": float(ds.RescaleIntercept),
        "type": "HU",
        "applied": True,
    }


def test_mr_without_rescale_keeps_stored_dtype() -> None:
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    series = read_dicom_series(Path(path).parent, [Path(path).name])
    assert series.data.dtype == ds.pixel_array.dtype
    np.testing.assert_array_equal(series.data[0], ds.pixel_array)
    assert series.rescale["applied"] is False
