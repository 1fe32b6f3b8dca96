"""DICOM reader: probe one file, read one series, list a DICOMDIR.

Every file gets a clear outcome: a :class:`~medpipe.io.base.Probe` /
:class:`~medpipe.io.base.Series`, or a :class:`~medpipe.errors.SourceError` subclass
whose one-line reason names the file.

Geometry follows :mod:`medpipe.io.base`: slices are sorted by the projection of
ImagePositionPatient on the slice normal (never by InstanceNumber), ``origin`` is the
position of the first sorted slice and the direction rows are
``[normal, column cosine, row cosine]`` (LPS unit vectors of array axes z, y, x).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from medpipe.deid import basic_profile_filter
from medpipe.errors import (
    InvalidSourceError,
    SeriesGeometryError,
    SourceError,
    SourceTooLargeError,
    UnsupportedSourceError,
)
from medpipe.io.base import Probe, Series

# pydicom logs every non-conformant value it reads (e.g. an over-long SH) as a warning
# *and* emits a Python warning.  Archives are full of them and they are not actionable
# per file; decoder failures reach the catalog as quarantine reasons instead.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)

__all__ = ["probe_dicom", "read_dicom_series", "read_dicomdir"]

#: Default refusal threshold for declared pixel data sizes (8 GiB).
DEFAULT_MAX_BYTES = 8 << 30

_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_RTSTRUCT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"
_SEG_SOP = "1.2.840.10008.5.1.4.1.1.66.4"
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_PIXEL_DATA = BaseTag(0x7FE00010)
_SAMPLES = BaseTag(0x00280002)
_PHOTOMETRIC = BaseTag(0x00280004)
_FRAMES = BaseTag(0x00280008)
_ROWS = BaseTag(0x00280010)
_COLUMNS = BaseTag(0x00280011)
_BITS_ALLOCATED = BaseTag(0x00280100)
_BITS_STORED = BaseTag(0x00280101)
_PIXEL_REPRESENTATION = BaseTag(0x00280103)
_UNDEFINED = 0xFFFFFFFF
_MAX_REASON = 240
#: Files up to this size are read into memory in one go (one system call instead of
#: the many small reads pydicom makes); larger ones are parsed from the open file.
_IN_MEMORY = 64 << 20
#: A well-formed IS / DS value (backslash-separated, space-padded numbers).  Values
#: matching these need no conversion to be known valid; anything else goes through
#: pydicom's own conversion, which gives the reason.
_PLAIN_IS = re.compile(rb"(?: *[+-]?\d+ *| *)(?:\\(?: *[+-]?\d+ *| *))*")
_PLAIN_DS = re.compile(
    rb"(?: *[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)? *| *)"
    rb"(?:\\(?: *[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)? *| *))*"
)


# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException | str) -> str:
    """Collapse an exception message onto one short line."""
    text = str(exc) if not isinstance(exc, str) else exc
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    line = "; ".join(parts) or type(exc).__name__
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _codec_name(ts: UID) -> str:
    """Short name of the codec family of a transfer syntax, for error reasons."""
    if ts in pydicom.uid.JPEG2000TransferSyntaxes:
        return "JPEG 2000 codestream"
    if ts in pydicom.uid.JPEGLSTransferSyntaxes:
        return "JPEG-LS codestream"
    if ts in pydicom.uid.JPEGTransferSyntaxes:
        return "JPEG codestream"
    if ts == pydicom.uid.RLELossless:
        return "RLE data"
    return "pixel data"


@contextmanager
def _quiet() -> Iterator[None]:
    """Ignore warnings (pydicom's VR-length and similar; values are still read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _is_part10(path: Path, rel: str) -> None:
    """Raise unless the file starts with a 128-byte preamble and ``DICM``."""
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except FileNotFoundError:
        raise InvalidSourceError("file not found", path=rel) from None
    except OSError as exc:
        raise InvalidSourceError(f"cannot open file: {_one_line(exc)}", path=rel) from None
    _check_part10(head, rel)


def _open_part10(path: Path, rel: str) -> BinaryIO:
    """The file, checked to be Part 10, as an in-memory buffer when small.

    One read of a small file replaces pydicom's many small reads; a large file is
    returned open (positioned at its start) so that a header-only read stays cheap.
    """
    try:
        fp = path.open("rb")
    except FileNotFoundError:
        raise InvalidSourceError("file not found", path=rel) from None
    except OSError as exc:
        raise InvalidSourceError(f"cannot open file: {_one_line(exc)}", path=rel) from None
    buf: BinaryIO = fp
    try:
        if os.fstat(fp.fileno()).st_size <= _IN_MEMORY:
            with fp:
                buf = io.BytesIO(fp.read())
        _check_part10(buf.read(132), rel)
        buf.seek(0)
    except OSError as exc:
        fp.close()
        raise InvalidSourceError(f"cannot open file: {_one_line(exc)}", path=rel) from None
    except BaseException:
        fp.close()
        buf.close()
        raise
    return buf


def _check_part10(head: bytes, rel: str) -> None:
    """Raise unless ``head`` (a file's first 132 bytes) is a preamble and ``DICM``."""
    if head[:2] == b"\x1f\x8b":
        raise InvalidSourceError("gzip-compressed file, not DICOM", path=rel)
    if len(head) < 132 or head[128:132] != b"DICM":
        raise InvalidSourceError(
            "not a DICOM Part 10 file (no 128-byte preamble and 'DICM' prefix / file meta)",
            path=rel,
        )


def _dcmread(fp: BinaryIO | Path, rel: str, *, stop_before_pixels: bool) -> FileDataset:
    """``dcmread`` with every failure turned into :class:`InvalidSourceError`."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise InvalidSourceError(f"not DICOM: {_one_line(exc)}", path=rel) from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt input
        raise InvalidSourceError(f"unreadable DICOM header: {_one_line(exc)}", path=rel) from None
    for w in caught:
        msg = str(w.message)
        if "End of file" in msg or "truncat" in msg.lower():
            raise InvalidSourceError(f"truncated file: {_one_line(msg)}", path=rel)
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    if not ts:
        raise InvalidSourceError("file meta has no Transfer Syntax UID (0002,0010)", path=rel)
    _check_last_element(ds, rel)
    return ds


def _check_last_element(ds: Dataset, rel: str) -> None:
    """Detect a file cut inside its last (defined-length) top-level element."""
    last = next(reversed(ds.keys()), None)
    if last is None:
        raise InvalidSourceError("empty or truncated dataset (no elements read)", path=rel)
    raw = ds.get_item(last)
    value = getattr(raw, "value", None)
    length = getattr(raw, "length", None)
    if isinstance(value, bytes) and length not in (None, _UNDEFINED) and len(value) < length:
        name = pydicom.datadict.keyword_for_tag(last) or str(last)
        raise InvalidSourceError(
            f"truncated file: {name} has {len(value)} of {length} declared bytes", path=rel
        )


def _get(ds: Dataset, keyword: str, rel: str, default: Any = None) -> Any:
    """Read one attribute, turning invalid values (bad VR content) into a reason.

    Callers run inside :func:`_quiet` (pydicom warns about e.g. over-long values).
    """
    tag = _tag_for(keyword)
    try:
        # By tag: ``ds.get(keyword)`` goes through a failed attribute look-up first.
        value = ds[tag].value if tag in ds else default
    except Exception as exc:  # noqa: BLE001 - value conversion errors vary
        raise InvalidSourceError(
            f"invalid value in {keyword}: {_one_line(exc)}", path=rel
        ) from None
    return default if value is None or value == "" else value


def _validate_values(ds: Dataset, rel: str) -> None:
    """Convert every top-level IS/DS element once so bad values (an IS of ``1A``) surface now.

    Only numeric-string elements are checked: converting everything (sequences
    included) would triple the cost of a probe.  A raw value that is plainly a list of
    numbers is accepted as is; any other goes through pydicom's conversion.
    """
    lenient = pydicom.config.settings.reading_validation_mode != pydicom.config.RAISE
    # The elements as read (``Dataset._dict``; ``get_item`` per tag costs as much as
    # the checks themselves), falling back to the public API.
    elements = getattr(ds, "_dict", None)
    items = (
        list(elements.items())
        if isinstance(elements, dict)
        else [(tag, ds.get_item(tag)) for tag in list(ds.keys())]
    )
    for tag, raw in items:
        vr = getattr(raw, "VR", None)
        if vr in (None, "UN"):
            vr = _dictionary_vr(tag)
        if vr not in ("IS", "DS"):
            continue
        if (
            lenient
            and isinstance(raw, RawDataElement)
            and isinstance(raw.value, bytes)
            and (_PLAIN_IS if vr == "IS" else _PLAIN_DS).fullmatch(raw.value)
        ):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                elem = ds[tag]
            if elem.VR in ("IS", "DS") and not elem.is_empty:
                values = elem.value if elem.VM > 1 else [elem.value]
                for v in values:
                    if isinstance(v, str) and v.strip():
                        (int if elem.VR == "IS" else float)(v)
        except Exception as exc:  # noqa: BLE001
            name = pydicom.datadict.keyword_for_tag(tag) or str(tag)
            raise InvalidSourceError(
                f"invalid value in {name}: {_one_line(exc)}", path=rel
            ) from None


@functools.lru_cache(maxsize=512)
def _tag_for(keyword: str) -> BaseTag:
    """The tag of a data dictionary keyword."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return BaseTag(tag)


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    """The data dictionary's VR of a tag (``None`` for private / unknown tags)."""
    try:
        return pydicom.datadict.dictionary_VR(tag)
    except KeyError:
        return None


def _int(ds: Dataset, keyword: str, rel: str, default: int | None = None) -> int | None:
    """An integer attribute, or ``default`` when absent; invalid values are a reason."""
    value = _get(ds, keyword, rel)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidSourceError(f"invalid value in {keyword}: {value!r}", path=rel) from None


def _image_size(ds: Dataset, rel: str) -> tuple[int, int, int, int, int]:
    """(rows, cols, frames, samples, bits allocated) with the required ones checked."""
    bits = _int(ds, "BitsAllocated", rel)
    if bits is None:
        raise InvalidSourceError("image without Bits Allocated (0028,0100)", path=rel)
    rows = _int(ds, "Rows", rel)
    cols = _int(ds, "Columns", rel)
    if rows is None or cols is None:
        raise InvalidSourceError("image without Rows/Columns (0028,0010/0011)", path=rel)
    if _get(ds, "PhotometricInterpretation", rel) is None:
        raise InvalidSourceError("image without Photometric Interpretation", path=rel)
    frames = _int(ds, "NumberOfFrames", rel, 1) or 1
    samples = _int(ds, "SamplesPerPixel", rel, 1) or 1
    if min(rows, cols, frames, samples, bits) <= 0:
        raise InvalidSourceError("non-positive image dimension in header", path=rel)
    return rows, cols, frames, samples, bits


def _declared_bytes(size: tuple[int, int, int, int, int]) -> int:
    rows, cols, frames, samples, bits = size
    return (rows * cols * frames * samples * bits + 7) // 8


def _check_size(size: tuple[int, int, int, int, int], rel: str, max_bytes: int) -> None:
    n = _declared_bytes(size)
    if n > max_bytes:
        rows, cols, frames, samples, bits = size
        raise SourceTooLargeError(
            f"declared image of {rows}x{cols}x{frames} frames x{samples} samples x{bits} bits "
            f"= {n} bytes exceeds max_bytes={max_bytes}",
            path=rel,
        )


def _check_pixel_element(fp: BinaryIO, ts: UID, expected: int, rel: str) -> None:
    """Cheap truncation check of the pixel data element at the file's current position."""
    little = ts.is_little_endian
    end = "<" if little else ">"
    start = fp.tell()
    fp.seek(0, 2)
    size = fp.seek(0, 2)
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        raise InvalidSourceError("truncated file: pixel data element header cut", path=rel)
    vr = head[4:6]
    if ts.is_implicit_VR or not (vr.isalpha() and vr.isupper()):
        # Implicit VR (also when a file's dataset contradicts its explicit syntax).
        (length,) = struct.unpack(end + "I", head[4:8])
    elif vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        tail = fp.read(4)
        if len(tail) < 4:
            raise InvalidSourceError("truncated file: pixel data element header cut", path=rel)
        (length,) = struct.unpack(end + "I", tail)
    else:
        (length,) = struct.unpack(end + "H", head[6:8])
    if length != _UNDEFINED:
        if length < expected:
            raise InvalidSourceError(
                f"pixel data holds {length} bytes but the header declares {expected} (truncated)",
                path=rel,
            )
        if fp.tell() + length > size:
            raise InvalidSourceError(
                f"truncated file: pixel data declares {length} bytes, {size - fp.tell()} remain",
                path=rel,
            )
        return
    # Encapsulated: walk the items to the sequence delimiter.
    pos = fp.tell()
    while True:
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise InvalidSourceError(
                "truncated file: encapsulated pixel data ends before its sequence delimiter",
                path=rel,
            )
        group, elem, ilen = struct.unpack("<HHI", item)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return
        if (group, elem) != (0xFFFE, 0xE000) or ilen == _UNDEFINED:
            raise InvalidSourceError("corrupt encapsulated pixel data item", path=rel)
        pos += 8 + ilen
        if pos > size:
            raise InvalidSourceError(
                "truncated file: encapsulated pixel data fragment runs past end of file",
                path=rel,
            )


def _referenced_series(ds: Dataset) -> str | None:
    """SeriesInstanceUID of the image series an RTSTRUCT refers to."""
    for ref_for in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in ref_for.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                uid = series.get("SeriesInstanceUID")
                if uid:
                    return str(uid)
    return None


def _dicomdir_files(ds: Dataset) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for rec in ds.get("DirectoryRecordSequence", []) or []:
        fid = rec.get("ReferencedFileID")
        if fid:
            parts = (fid,) if isinstance(fid, str) else tuple(str(p) for p in fid)
            out.append(parts)
    return out


# --------------------------------------------------------------------------- probe


def probe_dicom(root: Path, rel: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Probe:
    """Header-only look at one DICOM file.

    Parameters
    ----------
    root
        Archive root.
    rel
        Path of the file relative to ``root`` (POSIX separators).
    max_bytes
        Refuse images whose declared pixel data is larger than this.

    Returns
    -------
    Probe
        ``role="image"`` grouped by SeriesInstanceUID; ``role="mask"`` for an RTSTRUCT,
        grouped by the referenced image series; ``role="index"`` for a DICOMDIR.

    Raises
    ------
    InvalidSourceError
        Not DICOM, no file meta / transfer syntax, bad values, truncated, an empty
        DICOMDIR, or an image missing required pixel attributes.
    UnsupportedSourceError
        A valid DICOM object without an image (SR, RT Plan, waveform, SEG…).
    SourceTooLargeError
        The declared pixel data exceeds ``max_bytes``.
    """
    with _quiet():
        return _probe(Path(root), rel, max_bytes=max_bytes)


def _image_probe(
    rel: str,
    uid: Any,
    sop_uid: Any,
    positioned: bool,
    size: tuple[int, int, int, int, int],
    modality: str,
    sop: str,
    ts: UID,
) -> Probe:
    """The probe of an image file: grouped by series, or alone where it cannot be stacked."""
    rows, cols, frames, samples, _ = size
    group = str(uid) if uid else rel
    if uid and (frames > 1 or not positioned):
        # A multi-frame object is a volume of its own, and images without a position
        # (secondary capture, ultrasound, photos) cannot be stacked: each is one series.
        group = f"{uid}/{sop_uid or rel}"
    return Probe(
        path=rel,
        kind="dicom",
        group=group,
        role="image",
        detail={
            "modality": modality or "OT",
            "sop_class_uid": sop,
            "n_frames": frames,
            "transfer_syntax": str(ts),
            "rows": rows,
            "cols": cols,
            "samples": samples,
        },
    )


def _probe(root: Path, rel: str, *, max_bytes: int) -> Probe:
    path = root / rel
    with _open_part10(path, rel) as fp:
        if isinstance(fp, io.BytesIO):
            fast = _fast_probe(fp.getvalue(), fp, rel, max_bytes)
            if fast is not None:
                return fast
            fp.seek(0)
        ds = _dcmread(fp, rel, stop_before_pixels=True)
        ts = UID(ds.file_meta.TransferSyntaxUID)
        if ts == DeflatedExplicitVRLittleEndian:
            at_pixels = False
        else:
            pos = fp.tell()
            tag = fp.read(4)
            fp.seek(pos)
            if len(tag) == 4:
                g, e = struct.unpack("<HH" if ts.is_little_endian else ">HH", tag)
                at_pixels = (g << 16 | e) in _PIXEL_TAGS
            else:
                at_pixels = False
        _validate_values(ds, rel)
        sop = str(
            _get(ds, "SOPClassUID", rel, "") or ds.file_meta.get("MediaStorageSOPClassUID", "")
        )
        modality = str(_get(ds, "Modality", rel, "") or "")

        if sop == _DICOMDIR_SOP or "DirectoryRecordSequence" in ds:
            files = _dicomdir_files(ds)
            if not files:
                raise InvalidSourceError("empty DICOMDIR (references no files)", path=rel)
            return Probe(
                path=rel,
                kind="dicom",
                group=rel,
                role="index",
                detail={"n_files": len(files), "transfer_syntax": str(ts)},
            )

        if sop == _RTSTRUCT_SOP or modality == "RTSTRUCT":
            ref = _referenced_series(ds)
            if ref is None:
                raise InvalidSourceError("RTSTRUCT references no image series", path=rel)
            return Probe(
                path=rel,
                kind="dicom",
                group=ref,
                role="mask",
                detail={"modality": "RTSTRUCT", "sop_class_uid": sop, "transfer_syntax": str(ts)},
            )

        if ts == DeflatedExplicitVRLittleEndian:
            # Deflated files are inflated in memory; a full read is the cheap check here.
            full = _dcmread(path, rel, stop_before_pixels=False)
            at_pixels = any(t in full for t in _PIXEL_TAGS)

        if not at_pixels:
            what = modality or (UID(sop).name if sop else "DICOM")
            raise UnsupportedSourceError(
                f"{what} object without pixel data (not an image)", path=rel
            )
        if sop == _SEG_SOP:
            raise UnsupportedSourceError("DICOM SEG objects are not ingested as images", path=rel)

        size = _image_size(ds, rel)
        _check_size(size, rel, max_bytes)
        if ts != DeflatedExplicitVRLittleEndian:
            expected = _declared_bytes(size)
            if str(_get(ds, "PhotometricInterpretation", rel)) == "YBR_FULL_422":
                expected = expected * 2 // 3  # chroma subsampled 2:1 horizontally
            _check_pixel_element(fp, ts, expected, rel)

    uid = _get(ds, "SeriesInstanceUID", rel)
    positioned = "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    sop_uid = _get(ds, "SOPInstanceUID", rel, "")
    return _image_probe(rel, uid, sop_uid, positioned, size, modality, sop, ts)


# --------------------------------------------------------------------------- fast probe
#
# pydicom builds a Dataset for every item of every sequence of a header; for the
# common file (an uncompressed little-endian image slice) the probe needs a dozen
# top-level values.  ``_scan_header`` walks the elements of such a file directly and
# gives up (returns ``None``) at anything unusual - another transfer syntax, a VR it
# does not know, an element running past the end of the file, an encoding switch -
# so that every file with a problem still goes through pydicom and gets the same
# reason as before.

_VR_LONG = frozenset(
    b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split()
)  # explicit VRs with a reserved field and a 4-byte length
_VR_KNOWN = _VR_LONG | frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
)
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 16


class _Unusual(Exception):  # noqa: N818 - internal signal, never escapes the module
    """The fast header scan met something it leaves to pydicom."""


def _element_at(data: bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, explicit VR or ``None``, value length, value offset) of the element at ``pos``."""
    if pos + 8 > len(data):
        raise _Unusual
    group, elem = _TAG.unpack_from(data, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, None, _U32.unpack_from(data, pos + 4)[0], pos + 8
    vr = data[pos + 4 : pos + 6]
    if vr not in _VR_KNOWN:
        raise _Unusual
    if vr in _VR_LONG:
        if pos + 12 > len(data):
            raise _Unusual
        return tag, vr, _U32.unpack_from(data, pos + 8)[0], pos + 12
    return tag, vr, _U16.unpack_from(data, pos + 6)[0], pos + 8


def _looks_implicit(data: bytes, pos: int) -> bool:
    """pydicom's test of a dataset's first element: no upper-case VR means implicit."""
    vr = data[pos + 4 : pos + 6]
    return len(vr) < 2 or not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)


def _skip_sequence(data: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Offset just past an undefined-length sequence whose items start at ``pos``.

    Its items are walked element by element (pydicom parses them when reading), and
    must be consistent: an item ends exactly where its length says.
    """
    if depth > _MAX_DEPTH:
        raise _Unusual
    while True:
        tag, _, length, pos = _element_at(data, pos, True)
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Unusual
        end = None if length == _UNDEFINED else pos + length
        pos = _skip_item(data, pos, end, implicit, depth)


def _skip_item(data: bytes, pos: int, end: int | None, implicit: bool, depth: int) -> int:
    """Offset past the elements of one item: up to ``end``, or its delimiter if ``None``."""
    if end is not None and end > len(data):
        raise _Unusual
    if (end is None or pos < end) and _looks_implicit(data, pos) != implicit:
        raise _Unusual  # an item in the other VR encoding
    while end is None or pos < end:
        tag, vr, length, pos = _element_at(data, pos, implicit)
        if tag == _ITEM_END:
            if end is None:
                return pos
            raise _Unusual
        if length == _UNDEFINED:
            if not _undefined_is_sequence(tag, vr):
                raise _Unusual
            pos = _skip_sequence(data, pos, implicit, depth + 1)
            continue
        pos += length
        if pos > len(data):
            raise _Unusual
    if pos != end:
        raise _Unusual
    return pos


def _undefined_is_sequence(tag: int, vr: bytes | None) -> bool:
    return vr in (b"SQ", b"UN") or (vr is None and _dictionary_vr(tag) == "SQ")


@dataclass
class _Header:
    """Top-level elements before the pixel data, as raw bytes."""

    ts: UID
    meta_sop: str
    elements: dict[int, tuple[str | None, bytes]]
    end: int  # offset where reading stopped (the pixel data element, or end of file)
    at_pixels: bool


def _scan_header(data: bytes) -> _Header:
    """The file meta and top-level elements of a little-endian Part 10 file.

    Raises
    ------
    _Unusual
        Anything the scan does not handle; the caller then uses pydicom.
    """
    pos = 132
    ts = meta_sop = ""
    while True:  # file meta: explicit VR little endian, group 0002
        if pos + 8 > len(data) or _TAG.unpack_from(data, pos)[0] != 0x0002:
            break
        tag, vr, length, start = _element_at(data, pos, False)
        if length == _UNDEFINED or start + length > len(data):
            raise _Unusual
        try:
            if tag == 0x00020010:
                ts = data[start : start + length].decode("ascii").rstrip("\x00 ")
            elif tag == 0x00020002:
                meta_sop = data[start : start + length].decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            raise _Unusual from None
        pos = start + length
    if ts not in _NATIVE_LE:
        raise _Unusual
    implicit = ts == pydicom.uid.ImplicitVRLittleEndian
    if pos + 8 > len(data) or _looks_implicit(data, pos) != implicit:
        raise _Unusual
    elements: dict[int, tuple[str | None, bytes]] = {}
    at_pixels = False
    while pos < len(data):
        tag, vr, length, start = _element_at(data, pos, implicit)
        if tag in _PIXEL_TAGS:
            at_pixels = True
            break
        if tag >> 16 == 0xFFFE:
            raise _Unusual
        if length == _UNDEFINED:
            if not _undefined_is_sequence(tag, vr):
                raise _Unusual
            pos = _skip_sequence(data, start, implicit, 0)
            elements[tag] = ("SQ", b"")
            continue
        pos = start + length
        if pos > len(data):
            raise _Unusual  # truncated: pydicom gives the reason
        elements[tag] = (vr.decode() if vr is not None else None, data[start:pos])
    if not elements:
        raise _Unusual
    return _Header(UID(ts), meta_sop, elements, pos, at_pixels)


#: (keyword, VR) of the values the fast probe reads.
_FAST_VALUES = {
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "Modality": (0x00080060, "CS"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "SamplesPerPixel": (0x00280002, "US"),
    "PhotometricInterpretation": (0x00280004, "CS"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "BitsAllocated": (0x00280100, "US"),
}


#: Single values in the VR's own repertoire (with its trailing padding).
_PLAIN_TEXT = {
    "UI": re.compile(rb"[0-9.]*\x00?"),
    "CS": re.compile(rb"[A-Z0-9_][A-Z0-9_ ]*"),
    "IS": re.compile(rb" *[+-]?[0-9]+ *"),
}


def _fast_value(header: _Header, keyword: str) -> Any:
    """A value converted as pydicom converts it (``None`` when absent or empty)."""
    tag, vr = _FAST_VALUES[keyword]
    found = header.elements.get(tag)
    if found is None or not found[1]:
        return None
    raw_vr, raw = found
    if raw_vr not in (None, vr):
        raise _Unusual
    if vr == "US":
        if len(raw) != 2:
            raise _Unusual
        return _U16.unpack(raw)[0]
    if not _PLAIN_TEXT[vr].fullmatch(raw):
        raise _Unusual  # multi-valued, or characters pydicom may treat specially
    value = pydicom.values.multi_string(raw.decode("ascii"))
    if vr == "IS":
        try:
            return int(value)
        except ValueError:
            raise _Unusual from None
    return value or None


def _fast_probe(data: bytes, fp: BinaryIO, rel: str, max_bytes: int) -> Probe | None:
    """:func:`probe_dicom` of a plain image file without pydicom, or ``None``."""
    if pydicom.config.settings.reading_validation_mode == pydicom.config.RAISE:
        return None
    try:
        header = _scan_header(data)
        for tag, (vr, raw) in header.elements.items():
            vr = vr if vr not in (None, "UN") else _dictionary_vr(tag)
            if vr in ("IS", "DS") and not (_PLAIN_IS if vr == "IS" else _PLAIN_DS).fullmatch(raw):
                raise _Unusual  # pydicom's conversion gives the reason
        sop = str(_fast_value(header, "SOPClassUID") or header.meta_sop or "")
        modality = str(_fast_value(header, "Modality") or "")
        if (
            not header.at_pixels
            or sop in (_DICOMDIR_SOP, _RTSTRUCT_SOP, _SEG_SOP)
            or modality == "RTSTRUCT"
            or 0x00041220 in header.elements  # DirectoryRecordSequence
        ):
            raise _Unusual
        bits = _fast_value(header, "BitsAllocated")
        rows = _fast_value(header, "Rows")
        cols = _fast_value(header, "Columns")
        photometric = _fast_value(header, "PhotometricInterpretation")
        frames = _fast_value(header, "NumberOfFrames") or 1
        samples = _fast_value(header, "SamplesPerPixel") or 1
        uid = _fast_value(header, "SeriesInstanceUID")
        sop_uid = _fast_value(header, "SOPInstanceUID")
    except _Unusual:
        return None
    if bits is None or rows is None or cols is None or photometric is None:
        return None
    if min(rows, cols, frames, samples, bits) <= 0:
        return None
    size = (rows, cols, frames, samples, bits)
    _check_size(size, rel, max_bytes)
    expected = _declared_bytes(size)
    if photometric == "YBR_FULL_422":
        expected = expected * 2 // 3  # chroma subsampled 2:1 horizontally
    fp.seek(header.end)
    _check_pixel_element(fp, header.ts, expected, rel)
    positioned = 0x00200032 in header.elements and 0x00200037 in header.elements
    return _image_probe(rel, uid, sop_uid, positioned, size, modality, sop, header.ts)


# --------------------------------------------------------------------------- DICOMDIR


def read_dicomdir(root: Path, rel: str) -> list[str]:
    """Relative paths (to ``root``) of the files a DICOMDIR references.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the DICOMDIR.

    Returns
    -------
    list of str
        POSIX paths relative to ``root``, in record order, without duplicates.

    Raises
    ------
    InvalidSourceError
        The file is not a DICOMDIR, is unreadable, or references no files.
    """
    path = Path(root) / rel
    _is_part10(path, rel)
    ds = _dcmread(path, rel, stop_before_pixels=False)
    if "DirectoryRecordSequence" not in ds:
        raise InvalidSourceError("not a DICOMDIR (no Directory Record Sequence)", path=rel)
    files = _dicomdir_files(ds)
    if not files:
        raise InvalidSourceError("empty DICOMDIR (references no files)", path=rel)
    base = Path(rel).parent
    out: list[str] = []
    for parts in files:
        p = (base.joinpath(*parts)).as_posix()
        if p not in out:
            out.append(p)
    return out


# --------------------------------------------------------------------------- series


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


_NATIVE_LE = (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian)
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
    return arr


def _sort_geometry(
    frames: list[_Frame], rels: list[str], tolerance: float
) -> tuple[list[int], float, np.ndarray, np.ndarray, str]:
    """Order planes along the normal and check the stack is regular.

    Returns (order, z spacing, origin, direction rows, how z spacing was found).
    """
    iop0 = frames[0].iop
    assert iop0 is not None
    for f in frames:
        assert f.iop is not None
        if np.max(np.abs(f.iop - iop0)) > 1e-4:
            raise SeriesGeometryError(
                f"mixed orientation: ImageOrientationPatient {np.round(f.iop, 5).tolist()} "
                f"differs from {np.round(iop0, 5).tolist()}",
                path=rels[f.file],
            )
    row_cos = iop0[:3] / np.linalg.norm(iop0[:3])
    col_cos = iop0[3:] / np.linalg.norm(iop0[3:])
    normal = np.cross(row_cos, col_cos)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise SeriesGeometryError(
            "ImageOrientationPatient cosines are not orthonormal", path=rels[frames[0].file]
        )
    direction = np.stack([normal, col_cos, row_cos])
    pos = np.stack([f.ipp for f in frames])  # type: ignore[misc]
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    proj_s = proj[order]
    if len(frames) == 1:
        return [0], 0.0, pos[0], direction, ""
    diffs = np.diff(proj_s)
    if np.any(diffs <= 1e-6 * max(1.0, float(np.max(np.abs(proj_s))))) or np.any(diffs < 1e-4):
        k = int(np.argmin(diffs))
        raise SeriesGeometryError(
            f"duplicate slice position {proj_s[k]:.4f} mm along the normal ({len(frames)} planes)",
            path=rels[frames[int(order[k + 1])].file],
        )
    spacing = float((proj_s[-1] - proj_s[0]) / (len(proj_s) - 1))
    dev = np.abs(diffs - spacing) / spacing
    if np.max(dev) > tolerance:
        k = int(np.argmax(dev))
        ratio = diffs[k] / float(np.median(diffs))
        what = "missing slice" if ratio > 1.5 else "uneven slice spacing"
        raise SeriesGeometryError(
            f"{what}: gap of {diffs[k]:.4f} mm where the mean spacing is {spacing:.4f} mm "
            f"(relative deviation {dev[k]:.3g} > tolerance {tolerance})",
            path=rels[frames[int(order[k + 1])].file],
        )
    # The stack must run along the normal (no gantry tilt / shear).
    in_plane = pos[order] - pos[order[0]] - np.outer(proj_s - proj_s[0], normal)
    if np.max(np.linalg.norm(in_plane, axis=1)) > max(tolerance * spacing, 1e-3):
        raise SeriesGeometryError(
            "slices are not stacked along the slice normal (gantry tilt or shear); not resampled",
            path=rels[frames[0].file],
        )
    return [int(i) for i in order], spacing, pos[order[0]], direction, "ImagePositionPatient"


def read_dicom_series(
    root: Path,
    rels: Sequence[str],
    *,
    tolerance: float = 0.01,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Series:
    """Read all image files of one DICOM series into a :class:`Series`.

    Parameters
    ----------
    root
        Archive root.
    rels
        Relative paths of the series' image files (any order).
    tolerance
        Allowed relative deviation of each slice gap from the mean slice spacing.
    max_bytes
        Refuse series whose declared pixel data is larger than this.

    Returns
    -------
    Series
        Axes ``(z, y, x)`` or, for colour, ``(c, y, x)`` / ``(c, z, y, x)``.  Rescale
        applied (float32) when it is not the identity.

    Raises
    ------
    InvalidSourceError
        A file is unreadable or its pixel data cannot be decoded.
    UnsupportedSourceError
        A file holds no image.
    SeriesGeometryError
        Mixed orientation, duplicate positions, missing slices or uneven spacing.
    SourceTooLargeError
        The declared pixel data exceeds ``max_bytes``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        return _read_series(Path(root), list(rels), tolerance=tolerance, max_bytes=max_bytes)


def _read_series(root: Path, rels: list[str], *, tolerance: float, max_bytes: int) -> Series:
    if not rels:
        raise InvalidSourceError("empty series (no files)")
    datasets: list[FileDataset] = []
    frames: list[_Frame] = []
    total = 0
    first_size: tuple[int, int, int, int, int] | None = None
    seen: dict[str, str] = {}
    copies: dict[str, list[tuple[FileDataset, str]]] = {}
    dropped: dict[str, str] = {}
    rejected: dict[str, str] = {}
    kept: list[str] = []
    with _quiet():
        for rel in rels:
            with _open_part10(root / rel, rel) as fp:
                ds = _dcmread(fp, rel, stop_before_pixels=False)
            sop_uid = str(_get(ds, "SOPInstanceUID", rel, "") or "")
            if sop_uid and sop_uid in seen:
                # The same SOP instance stored twice (e.g. re-exported in another transfer
                # syntax): one copy is used, the others are kept as fall-backs for decoding.
                copies[seen[sop_uid]].append((ds, rel))
                continue
            if sop_uid:
                seen[sop_uid] = rel
                copies[rel] = []
            fi = len(kept)
            kept.append(rel)
            if not any(t in ds for t in _PIXEL_TAGS):
                raise UnsupportedSourceError("object without pixel data (not an image)", path=rel)
            size = _image_size(ds, rel)
            total += _declared_bytes(size)
            _check_size((total, 1, 1, 1, 8), rel, max_bytes)
            if first_size is None:
                first_size = size
            elif size[:2] != first_size[:2] or size[3] != first_size[3]:
                raise SeriesGeometryError(
                    f"image size {size[0]}x{size[1]}x{size[3]} differs from "
                    f"{first_size[0]}x{first_size[1]}x{first_size[3]} in the same series",
                    path=rel,
                )
            frames.extend(_frames_of(ds, fi, size[2], rel))
            datasets.append(ds)
    assert first_size is not None
    rels = kept
    ds0 = datasets[0]

    def get0(keyword: str, default: Any = None) -> Any:
        with _quiet():
            return _get(ds0, keyword, rels[0], default)

    header: dict[str, Any] = basic_profile_filter(ds0)

    # ---- geometry
    with_pos = [f.ipp is not None and f.iop is not None for f in frames]
    spacings = {f.spacing for f in frames}
    if len(spacings) > 1:
        raise SeriesGeometryError(
            f"mixed PixelSpacing in one series: {sorted(map(str, spacings))}", path=rels[0]
        )
    pixel_spacing = frames[0].spacing
    if pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        header["pixel_spacing_source"] = "unknown (1.0 mm assumed)"
    else:
        header["pixel_spacing_source"] = "PixelSpacing"

    if all(with_pos):
        order, sz, origin, direction, how = _sort_geometry(frames, rels, tolerance)
    elif any(with_pos):
        raise SeriesGeometryError(
            "some planes lack ImagePositionPatient/Orientation", path=rels[with_pos.index(False)]
        )
    elif len(datasets) > 1:
        raise SeriesGeometryError(
            f"{len(datasets)} files without ImagePositionPatient/Orientation: slice order unknown",
            path=rels[0],
        )
    else:
        order = list(range(len(frames)))
        sz, how = 0.0, ""
        origin = np.zeros(3)
        direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        header["geometry_source"] = "none (no ImagePositionPatient/Orientation)"
    if len(frames) == 1 or not how:
        if len(frames) > 1:
            header["frames_along_z"] = True
        for key, value in (
            ("SliceThickness", frames[0].thickness),
            ("SpacingBetweenSlices", get0("SpacingBetweenSlices")),
        ):
            if value is not None and float(value) > 0:
                sz, how = float(value), key
                break
        else:
            sz, how = 1.0, "default (1.0 mm)"
    header["z_spacing_source"] = how
    header["n_slices"] = len(frames)

    # ---- pixels
    _check_size((total, 1, 1, 1, 8), rels[0], max_bytes)
    planes: list[np.ndarray] = []
    decoded = []
    for fi, (ds, rel) in enumerate(zip(datasets, rels, strict=True)):
        arr, used = _decode_first_good(ds, rel, copies.get(rel, []), rejected)
        decoded.append(arr)
        rels[fi] = used
        for _, other in copies.get(rel, []):
            if other != used and other not in rejected:
                dropped[other] = f"duplicate SOP instance (same as {used})"
    for k in order:
        f = frames[k]
        planes.append(decoded[f.file][f.index])
    data = np.stack(planes)  # (z, y, x, c)
    del decoded
    slopes = np.array([frames[k].slope for k in order])
    inters = np.array([frames[k].intercept for k in order])
    identity = bool(np.all(slopes == 1.0) and np.all(inters == 0.0))
    if data.shape[-1] != 1 and not identity:
        # The modality LUT (rescale) applies to grey-level data only (PS3.3 C.11.1).
        header["rescale_ignored"] = "colour image: RescaleSlope/Intercept not applied"
        slopes, inters, identity = np.ones_like(slopes), np.zeros_like(inters), True
    if not identity:
        scaled = data.astype(np.float64)
        scaled *= slopes[:, None, None, None]
        scaled += inters[:, None, None, None]
        data = scaled.astype(np.float32)

    modality = str(get0("Modality", "OT") or "OT")
    rtype = frames[order[0]].rescale_type
    units = get0("Units")
    if rtype is None:
        if modality == "CT":
            rtype = "HU"
        elif modality == "PT" and units:
            rtype = str(units)
        else:
            rtype = "US"
    rescale: dict[str, Any] = {
        "slope": float(slopes[0]) if np.all(slopes == slopes[0]) else slopes.tolist(),
        "intercept": float(inters[0]) if np.all(inters == inters[0]) else inters.tolist(),
        "type": str(rtype),
        "applied": not identity,
    }
    if units:
        rescale["units"] = str(units)

    samples = data.shape[-1]
    spacing: tuple[float, ...]
    if samples == 1:
        data = data[..., 0]
        axes: tuple[str, ...] = ("z", "y", "x")
        spacing = (float(sz), float(pixel_spacing[0]), float(pixel_spacing[1]))
    elif data.shape[0] == 1:
        data = np.moveaxis(data[0], -1, 0)
        axes = ("c", "y", "x")
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    else:
        data = np.moveaxis(data, -1, 0)
        axes = ("c", "z", "y", "x")
        spacing = (float(sz), float(pixel_spacing[0]), float(pixel_spacing[1]))
    data = np.ascontiguousarray(data)

    uid = get0("SeriesInstanceUID")
    study = get0("StudyInstanceUID")
    pid = get0("PatientID")
    for_uid = get0("FrameOfReferenceUID")
    return Series(
        uid=str(uid) if uid else rels[0],
        sources=[rels[frames[k].file] for k in order if frames[k].index == 0],
        dropped=dropped,
        rejected=rejected,
        data=data,
        modality=modality,
        spacing=spacing,
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=tuple(tuple(float(v) for v in row) for row in direction),
        axes=axes,
        study_uid=str(study) if study else None,
        patient_id=str(pid) if pid else None,
        rescale=rescale,
        header=header,
        frame_of_reference_uid=str(for_uid) if for_uid else None,
    )
