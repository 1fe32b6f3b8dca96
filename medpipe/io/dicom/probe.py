"""The header-only probe of one DICOM file."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from medpipe.errors import InvalidSourceError, UnsupportedSourceError
from medpipe.io.base import Probe
from medpipe.io.dicom.dicomdir import _dicomdir_files
from medpipe.io.dicom.part10 import (
    _DICOMDIR_SOP,
    _PIXEL_TAGS,
    _RTSTRUCT_SOP,
    _SEG_SOP,
    DEFAULT_MAX_BYTES,
    _check_pixel_element,
    _dcmread,
    _open_part10,
    _quiet,
)
from medpipe.io.dicom.scan import _fast_probe, _image_probe
from medpipe.io.dicom.values import (
    _check_size,
    _declared_bytes,
    _get,
    _image_size,
    _validate_values,
)
from medpipe.io.seg import seg_referenced_series


def _referenced_series(ds: Dataset) -> str | None:
    """SeriesInstanceUID of the image series an RTSTRUCT refers to."""
    for ref_for in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in ref_for.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                uid = series.get("SeriesInstanceUID")
                if uid:
                    return str(uid)
    return None


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
        ``role="image"`` grouped by SeriesInstanceUID; ``role="mask"`` for an RTSTRUCT
        or a DICOM SEG, grouped by the referenced image series; ``role="index"`` for a DICOMDIR.

    Raises
    ------
    InvalidSourceError
        Not DICOM, no file meta / transfer syntax, bad values, truncated, an empty
        DICOMDIR, or an image missing required pixel attributes.
    UnsupportedSourceError
        A valid DICOM object without an image (SR, RT Plan, waveform…).
    SourceTooLargeError
        The declared pixel data exceeds ``max_bytes``.
    """
    with _quiet():
        return _probe(Path(root), rel, max_bytes=max_bytes)


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
            _check_size(_image_size(ds, rel), rel, max_bytes)
            ref = seg_referenced_series(ds)
            if ref is None:
                raise InvalidSourceError(
                    "SEG references no image series (no Referenced Series Sequence)", path=rel
                )
            return Probe(
                path=rel,
                kind="dicom",
                group=ref,
                role="mask",
                detail={"modality": "SEG", "sop_class_uid": sop, "transfer_syntax": str(ts)},
            )

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
