"""Reading and validating header values (by tag, with invalid values turned into reasons)."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from medpipe.errors import InvalidSourceError
from medpipe.io.base import check_declared_size
from medpipe.io.dicom.part10 import _PLAIN_DS, _PLAIN_IS, _one_line


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
    # ``Dataset.elements()`` yields the elements as read (raw, unconverted) where they
    # have not been accessed yet, without converting them.
    for raw in ds.elements():
        tag = raw.tag
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
    rows, cols, frames, samples, bits = size
    what = f"{rows}x{cols}x{frames} frames x{samples} samples x{bits} bits"
    check_declared_size(_declared_bytes(size), rel, what, limit=max_bytes)
