"""Frames of a DICOM object: per-frame geometry and rescale, and pixel decoding."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import UID

from medpipe.errors import (
    InvalidSourceError,
    SourceError,
    SourceTooLargeError,
)
from medpipe.io.dicom.part10 import (
    _BITS_ALLOCATED,
    _BITS_STORED,
    _COLUMNS,
    _FRAMES,
    _NATIVE_LE,
    _PHOTOMETRIC,
    _PIXEL_DATA,
    _PIXEL_REPRESENTATION,
    _ROWS,
    _SAMPLES,
    _codec_name,
    _one_line,
)
from medpipe.io.dicom.values import _get


@dataclass
class _Frame:
    """One 2D plane of the series and where it comes from."""

    file: int
    index: int
    ipp: np.ndarray | None
    iop: np.ndarray | None
    spacing: tuple[float, float] | None
    slope: float
    intercept: float
    thickness: float | None
    rescale_type: str | None


def _floats(value: Any, n: int, what: str, rel: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSourceError(f"invalid {what}: {_one_line(exc)}", path=rel) from None
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise InvalidSourceError(f"invalid {what}: expected {n} finite numbers", path=rel)
    return arr


def _first(seq_parent: Dataset | None, seq: str) -> Dataset | None:
    if seq_parent is None:
        return None
    items = seq_parent.get(seq)
    return items[0] if items else None


def _frames_of(ds: Dataset, fi: int, nframes: int, rel: str) -> list[_Frame]:
    """Per-frame geometry and rescale of one object (classic, enhanced or plain multi-frame)."""
    modality_slope = _get(ds, "RescaleSlope", rel)
    modality_inter = _get(ds, "RescaleIntercept", rel)
    rtype = _get(ds, "RescaleType", rel)
    dose_scaling = _get(ds, "DoseGridScaling", rel)
    if modality_slope is None and dose_scaling is not None:
        modality_slope = dose_scaling
        rtype = rtype or _get(ds, "DoseUnits", rel)
    thickness = _get(ds, "SliceThickness", rel)

    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if shared is not None or per_frame:
        if per_frame and len(per_frame) != nframes:
            raise InvalidSourceError(
                f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {nframes} frames",
                path=rel,
            )
        out = []
        for k in range(nframes):
            item = per_frame[k] if per_frame else None

            def macro(name: str, item: Dataset | None = item) -> Dataset | None:
                found = _first(item, name)
                return found if found is not None else _first(shared, name)

            pos = macro("PlanePositionSequence")
            ori = macro("PlaneOrientationSequence")
            meas = macro("PixelMeasuresSequence")
            pvt = macro("PixelValueTransformationSequence")
            ps = _floats(meas.get("PixelSpacing") if meas else None, 2, "PixelSpacing", rel)
            th = meas.get("SliceThickness") if meas else None
            out.append(
                _Frame(
                    file=fi,
                    index=k,
                    ipp=_floats(
                        pos.get("ImagePositionPatient") if pos else None,
                        3,
                        "ImagePositionPatient",
                        rel,
                    ),
                    iop=_floats(
                        ori.get("ImageOrientationPatient") if ori else None,
                        6,
                        "ImageOrientationPatient",
                        rel,
                    ),
                    spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
                    slope=float(pvt.get("RescaleSlope", 1.0) if pvt else modality_slope or 1.0),
                    intercept=float(
                        pvt.get("RescaleIntercept", 0.0) if pvt else modality_inter or 0.0
                    ),
                    thickness=float(th)
                    if th not in (None, "")
                    else (float(thickness) if thickness is not None else None),
                    rescale_type=(
                        str(pvt.get("RescaleType")) if pvt and pvt.get("RescaleType") else rtype
                    ),
                )
            )
        return out

    ipp = _floats(_get(ds, "ImagePositionPatient", rel), 3, "ImagePositionPatient", rel)
    iop = _floats(_get(ds, "ImageOrientationPatient", rel), 6, "ImageOrientationPatient", rel)
    ps = _floats(_get(ds, "PixelSpacing", rel), 2, "PixelSpacing", rel)
    offsets = _get(ds, "GridFrameOffsetVector", rel)
    ipps: list[np.ndarray | None] = [ipp] * nframes
    if nframes > 1 and ipp is not None and iop is not None and offsets is not None:
        off = _floats(offsets, nframes, "GridFrameOffsetVector", rel)
        assert off is not None
        normal = np.cross(iop[:3], iop[3:])
        if off[0] != 0.0:  # absolute offsets (type b): make them relative to the first
            off = off - off[0]
        ipps = [ipp + o * normal for o in off]
    elif nframes > 1:
        ipps = [None] * nframes  # plain multi-frame (US, SC…): frames along z, no positions
    return [
        _Frame(
            file=fi,
            index=k,
            ipp=ipps[k],
            iop=iop,
            spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
            slope=float(modality_slope) if modality_slope is not None else 1.0,
            intercept=float(modality_inter) if modality_inter is not None else 0.0,
            thickness=float(thickness) if thickness is not None else None,
            rescale_type=str(rtype) if rtype else None,
        )
        for k in range(nframes)
    ]


def _decode_first_good(
    ds: FileDataset, rel: str, copies: list[tuple[FileDataset, str]], rejected: dict[str, str]
) -> tuple[np.ndarray, str]:
    """Decode a SOP instance, falling back to its other copies if this one is corrupt.

    Returns the pixels and the path of the copy used; copies that failed are added to
    ``rejected`` with their reason.  When every copy fails, the first error is raised.
    """
    first: SourceError | None = None
    for cand_ds, cand_rel in [(ds, rel), *copies]:
        try:
            return _decode(cand_ds, cand_rel), cand_rel
        except SourceError as err:
            first = first or err
            rejected[cand_rel] = err.reason
    for cand_rel in [rel, *(r for _, r in copies)]:
        rejected.pop(cand_rel, None)
    assert first is not None
    raise first


_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def _native_pixels(ds: Dataset, ts: UID) -> np.ndarray | None:
    """Uncompressed little-endian greyscale pixels viewed in place, or ``None``.

    The common case (CT/MR/PET slices) needs no decoder: the pixel data of a native
    little-endian file whose stored bits fill the allocated ones is the array itself.
    It gives what ``ds.pixel_array`` gives (same values and dtype) without its
    per-call set-up; anything else (compressed, big endian, colour, float, unused high
    bits, a length that does not match the header) returns ``None`` and goes through
    pydicom.
    """
    if ts not in _NATIVE_LE or _PIXEL_DATA not in ds:
        return None
    try:
        value = ds[_PIXEL_DATA].value
        bits = int(ds[_BITS_ALLOCATED].value)
        stored = int(ds[_BITS_STORED].value)
        signed = int(ds[_PIXEL_REPRESENTATION].value)
        photometric = str(ds[_PHOTOMETRIC].value)
        samples = int(ds[_SAMPLES].value) if _SAMPLES in ds else 1
        rows, cols = int(ds[_ROWS].value), int(ds[_COLUMNS].value)
        frames = int(ds[_FRAMES].value or 1) if _FRAMES in ds else 1
    except (KeyError, TypeError, ValueError):
        return None
    if (
        not isinstance(value, bytes)
        or bits not in (8, 16, 32)
        or stored != bits
        or signed not in (0, 1)
        or photometric not in _MONOCHROME
        or samples != 1
        or min(rows, cols, frames) <= 0
    ):
        return None
    count = rows * cols * frames
    expected = count * bits // 8
    if len(value) != expected and not (expected % 2 and len(value) == expected + 1):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return np.frombuffer(value, dtype=dtype, count=count)


def _decode(ds: FileDataset, rel: str) -> np.ndarray:
    """Decoded pixels as (frames, rows, cols, samples), colour converted to RGB."""
    ts = UID(ds.file_meta.TransferSyntaxUID)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            native = _native_pixels(ds, ts)
            arr = native if native is not None else ds.pixel_array
            photometric = str(ds.PhotometricInterpretation)
            # ``pixel_array`` converts YBR_FULL/YBR_FULL_422 (and JPEG YBR) to RGB
            # (pydicom 3 ``as_rgb=True``); palette colour is expanded here.
            if photometric == "PALETTE COLOR":
                arr = pydicom.pixels.apply_color_lut(arr, ds)
    except SourceError:
        raise
    except MemoryError:
        raise SourceTooLargeError("not enough memory to decode pixel data", path=rel) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on corrupt data
        raise InvalidSourceError(f"corrupt {_codec_name(ts)}: {_one_line(exc)}", path=rel) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric == "PALETTE COLOR":
        samples = 3
    rows, cols = int(ds.Rows), int(ds.Columns)
    try:
        arr = arr.reshape(frames, rows, cols, samples)
    except ValueError:
        raise InvalidSourceError(
            f"decoded pixel array {arr.shape} does not match header "
            f"{frames}x{rows}x{cols}x{samples}",
            path=rel,
        ) from None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if photometric == "MONOCHROME1":
        lo, hi = stored_range(ds, arr.dtype)
        arr = monochrome1_to_2(arr, lo, hi)
    return arr


def stored_range(ds: Dataset, dtype: np.dtype) -> tuple[float, float]:
    """The range of stored values: ``BitsStored`` bits, signed per ``PixelRepresentation``.

    Float pixel data has no such range: ``(nan, nan)`` (see :func:`monochrome1_to_2`).
    """
    if np.dtype(dtype).kind == "f":
        return float("nan"), float("nan")
    bits = int(ds.get("BitsStored") or np.dtype(dtype).itemsize * 8)
    bits = min(bits, np.dtype(dtype).itemsize * 8)
    if int(ds.get("PixelRepresentation") or 0) == 1:
        return float(-(1 << (bits - 1))), float((1 << (bits - 1)) - 1)
    return 0.0, float((1 << bits) - 1)


def monochrome1_to_2(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """MONOCHROME1 pixels as MONOCHROME2: ``x -> hi + lo - x``.

    MONOCHROME1 displays its lowest value as white; inverting over the stored range
    ``[lo, hi]`` (:func:`stored_range`: ``[0, 2**BitsStored - 1]`` unsigned,
    ``[-2**(BitsStored-1), 2**(BitsStored-1) - 1]`` signed) gives the same picture with
    the lowest value black, in the same dtype, so 12-bit unsigned ``x`` becomes
    ``4095 - x``.  Values outside the range (stray bits above BitsStored) are clipped
    to it first.  The modality rescale is applied afterwards, which is the same as
    inverting the rescaled values over the rescaled range.  Float pixel data (no stored
    range; ``lo``/``hi`` NaN) is inverted over its own minimum and maximum.

    Parameters
    ----------
    arr
        Decoded grey pixels.
    lo, hi
        The stored range.

    Returns
    -------
    numpy.ndarray
        A new array of ``arr``'s dtype.
    """
    if arr.dtype.kind == "f" or not (np.isfinite(lo) and np.isfinite(hi)):
        if arr.size == 0:
            return arr.copy()
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        return (np.asarray(hi + lo, dtype=np.float64) - arr).astype(arr.dtype)
    out = np.clip(arr, arr.dtype.type(lo), arr.dtype.type(hi))
    np.subtract(arr.dtype.type(int(hi) + int(lo)), out, out=out)
    return out
