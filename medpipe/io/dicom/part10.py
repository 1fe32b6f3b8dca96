"""Opening DICOM Part 10 files: the preamble check, ``dcmread`` with one-line reasons,
and the cheap truncation checks of the last element and the pixel data element."""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID

from medpipe.errors import InvalidSourceError
from medpipe.io.base import MAX_BYTES

#: The reader's refusal threshold: the shared one of every reader.
DEFAULT_MAX_BYTES = MAX_BYTES

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


def is_seg(root: Path, rel: str) -> bool:
    """Whether a (probed) DICOM file is a Segmentation Storage object.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the file.

    Returns
    -------
    bool
        ``True`` where its SOP Class UID is Segmentation Storage (DICOM SEG).

    Raises
    ------
    InvalidSourceError
        The file cannot be opened or is not Part 10.
    """
    with _quiet(), _open_part10(Path(root) / rel, rel) as fp:
        ds = _dcmread(fp, rel, stop_before_pixels=True)
    sop = ds.get("SOPClassUID") or (ds.file_meta.get("MediaStorageSOPClassUID") or "")
    return str(sop) == _SEG_SOP


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


_NATIVE_LE = (pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian)
