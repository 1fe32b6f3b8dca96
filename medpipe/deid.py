"""De-identification: pseudonymous keys and the PS3.15 Basic Profile for kept headers."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import posixpath
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "pseudonym",
    "KEY_LENGTH",
    "file_key",
    "FILE_KEY_PREFIX",
    "redact_paths",
    "basic_profile_filter",
    "BASIC_PROFILE_KEEP",
]

#: Hex characters kept from the HMAC-SHA256 digest (96 bits).
KEY_LENGTH = 24


def pseudonym(value: str, *, secret: bytes, kind: str) -> str:
    """Keyed hash of an identifier (a UID, a patient ID or a source path).

    Parameters
    ----------
    value
        The identifier.  It never leaves this function.
    secret
        The deployment's secret (see :func:`medpipe.config.resolve_secret`).
    kind
        A namespace such as ``"series"``, ``"study"`` or ``"patient"``, so equal values
        of different kinds get different keys.

    Returns
    -------
    str
        ``KEY_LENGTH`` lowercase hex characters.
    """
    digest = hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:KEY_LENGTH]


# --------------------------------------------------------------------------- file keys

#: How a file shows outside the catalog: ``file:<key>``.
FILE_KEY_PREFIX = "file:"


def file_key(path: str, *, secret: bytes) -> str:
    """The pseudonymous key of an archive file: the HMAC of its archive-relative path.

    Archive paths often carry a name or a medical record number
    (``SMITH_JOHN_12345/…``).  The catalog keeps the path (operators need it to find a
    file: ``medpipe quarantine``); everywhere else (ingest summaries, Prefect artifacts,
    quarantine reasons naming another file, logs, reports) a file shows as
    ``file:<key>``, the same key for the same path under the same secret.

    Parameters
    ----------
    path
        The file's POSIX path relative to the archive root (a catalog ``path``).
    secret
        The deployment's secret.

    Returns
    -------
    str
        ``file:`` followed by ``KEY_LENGTH`` hex characters.
    """
    return FILE_KEY_PREFIX + pseudonym(path, secret=secret, kind="file")


def redact_paths(
    text: str, paths: Iterable[str], *, secret: bytes, archive: str | None = None
) -> str:
    """Replace every archive path in ``text`` by its file key (:func:`file_key`).

    Each of ``paths`` (archive-relative) is replaced wherever it appears, alone or
    under the archive root (absolute, as an error message of a decoder prints it).
    Any other path under the archive root is replaced by the key of its relative path,
    and a bare mention of the root itself by ``<archive>``.

    Parameters
    ----------
    text
        A reason, a log line, a traceback.
    paths
        Archive-relative POSIX paths that may appear in it (a series' files).
    secret
        The deployment's secret.
    archive
        The archive root, to find absolute paths too.

    Returns
    -------
    str
        ``text`` without those paths.
    """
    rels = sorted({p for p in paths if p}, key=len, reverse=True)
    roots: list[str] = []
    if archive:
        for root in (str(archive), os.path.abspath(archive), os.path.realpath(archive)):
            root = root.rstrip("/\\")
            if root and root not in roots:
                roots.append(root)
        roots.sort(key=len, reverse=True)
    for rel in rels:
        key = file_key(rel, secret=secret)
        for root in roots:
            text = text.replace(f"{root}/{rel}", key).replace(os.path.join(root, rel), key)
        # not inside a longer name (``x1.dcm`` is not ``1.dcm``)
        text = re.sub(r"(?<![\w.\-])" + re.escape(rel) + r"(?![\w\-])", key, text)

    def under(m: re.Match[str]) -> str:
        return file_key(posixpath.normpath(m.group(1)), secret=secret)

    for root in roots:
        text = re.sub(re.escape(root) + r"[/\\]([^\s'\"`:,;)\]]+)", under, text)
        text = text.replace(root, "<archive>")
    return text


# --------------------------------------------------------------------------- Basic Profile

#: Non-identifying technical attributes kept in ``Series.header``.  None of them is in
#: the PS3.15 Table E.1-1 Basic Profile's remove/replace list; everything not listed
#: here (names, IDs, dates, times, UIDs, institution, accession, descriptions, free
#: text, private tags, sequences) is dropped.
BASIC_PROFILE_KEEP: frozenset[str] = frozenset(
    {
        # what and how
        "Modality",
        "SOPClassUID",
        "ImageType",
        "Manufacturer",
        "ManufacturerModelName",
        "BodyPartExamined",
        "PatientPosition",
        "ScanOptions",
        # pixel module
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelSpacing",
        "ImagerPixelSpacing",
        "SliceThickness",
        "SpacingBetweenSlices",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "WindowCenter",
        "WindowWidth",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "PresentationLUTShape",
        # CT
        "KVP",
        "XRayTubeCurrent",
        "ExposureTime",
        "Exposure",
        "ConvolutionKernel",
        "FilterType",
        "GantryDetectorTilt",
        "RevolutionTime",
        "SpiralPitchFactor",
        "SingleCollimationWidth",
        "TotalCollimationWidth",
        "ReconstructionDiameter",
        "CTDIvol",
        "FocalSpots",
        # MR
        "RepetitionTime",
        "EchoTime",
        "InversionTime",
        "FlipAngle",
        "MagneticFieldStrength",
        "ImagingFrequency",
        "ImagedNucleus",
        "EchoTrainLength",
        "EchoNumbers",
        "ScanningSequence",
        "SequenceVariant",
        "MRAcquisitionType",
        "NumberOfAverages",
        "PixelBandwidth",
        "ReceiveCoilName",
        "TransmitCoilName",
        "SAR",
        "PercentSampling",
        "PercentPhaseFieldOfView",
        "AcquisitionMatrix",
        "InPlanePhaseEncodingDirection",
        "DiffusionBValue",
        "PulseSequenceName",
        "MRAcquisitionFrequencyEncodingSteps",
        "MRAcquisitionPhaseEncodingStepsInPlane",
        # PET / NM
        "Units",
        "DecayCorrection",
        "CorrectedImage",
        "AttenuationCorrectionMethod",
        "ReconstructionMethod",
        "ScatterCorrectionMethod",
        "RandomsCorrectionMethod",
        "CountsSource",
        "SeriesType",
        "ActualFrameDuration",
        "EnergyWindowLowerLimit",
        "EnergyWindowUpperLimit",
        # RT dose
        "DoseUnits",
        "DoseType",
        "DoseSummationType",
        "DoseGridScaling",
        # US
        "UltrasoundColorDataPresent",
    }
)

#: Value representations never kept even for an allow-listed keyword (they carry
#: names, dates, times, instance identifiers or free text).
_DENY_VR = frozenset(
    {"PN", "DA", "DT", "TM", "LT", "ST", "UT", "AE", "UN", "SQ", "OB", "OW", "OF", "OD", "OL", "OV"}
)
#: Class UIDs are standard constants, not identifiers of a patient or an instance.
_KEEP_UI = frozenset({"SOPClassUID"})


def _json_value(value: Any) -> Any:
    """A JSON-serialisable copy of a pydicom value, or ``None`` to drop it."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import IS, DSfloat

    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        items = [_json_value(v) for v in value]
        return [v for v in items if v is not None] or None
    if isinstance(value, bool):
        return value
    if isinstance(value, IS | int):
        return int(value)
    if isinstance(value, DSfloat | float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, bytes):
        return None
    return str(value)


def basic_profile_filter(ds: Any) -> dict[str, Any]:
    """Keep only non-identifying technical header values (DICOM PS3.15 Basic Profile).

    An allow-list (:data:`BASIC_PROFILE_KEEP`) of top-level, non-private attributes
    survives; everything the Basic Application Level Confidentiality Profile (Table
    E.1-1) removes or replaces — patient names and IDs, dates and times, institution,
    accession number, instance UIDs, descriptions and other free text, private tags —
    is dropped, and no value whose VR carries names, dates, times or text is kept.

    Parameters
    ----------
    ds
        A ``pydicom.Dataset``.

    Returns
    -------
    dict
        ``keyword -> value`` with JSON-serialisable values (str, int, float, lists).
    """
    out: dict[str, Any] = {}
    for keyword in sorted(BASIC_PROFILE_KEEP):
        try:
            elem = ds.data_element(keyword)
        except Exception:  # noqa: BLE001 - invalid values are simply not kept
            continue
        if elem is None or elem.tag.is_private or elem.VR in _DENY_VR:
            continue
        if elem.VR == "UI" and keyword not in _KEEP_UI:
            continue
        try:
            value = _json_value(elem.value)
        except Exception:  # noqa: BLE001
            continue
        if value is not None:
            out[keyword] = value
    return out
