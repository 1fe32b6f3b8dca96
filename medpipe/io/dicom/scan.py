"""The fast header scan: the probe of a plain little-endian image file without pydicom."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import pydicom
from pydicom.uid import UID

from medpipe.io.base import Probe
from medpipe.io.dicom.part10 import (
    _DICOMDIR_SOP,
    _NATIVE_LE,
    _PIXEL_TAGS,
    _PLAIN_DS,
    _PLAIN_IS,
    _RTSTRUCT_SOP,
    _SEG_SOP,
    _UNDEFINED,
    _check_pixel_element,
)
from medpipe.io.dicom.values import _check_size, _declared_bytes, _dictionary_vr

# The fast header scan.
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
