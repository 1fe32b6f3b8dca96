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
    "IDENTIFYING_KEYWORDS",
    "identifying_values",
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


# --------------------------------------------------------------------------- audit values

#: Attributes of the Basic Profile (PS3.15 Table E.1-1) whose values identify a patient,
#: a visit, a person or a place, collected by ``medpipe audit`` from the archive's
#: headers.  Every person name (VR PN), date (DA, DT) and instance UID (UI, except the
#: standard ``1.2.840.10008.`` class and syntax UIDs) is collected whatever its keyword.
IDENTIFYING_KEYWORDS: frozenset[str] = frozenset(
    {
        "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientAddress",
        "PatientTelephoneNumbers", "MedicalRecordLocator", "MilitaryRank",
        "BranchOfService", "Occupation", "PatientReligiousPreference", "CountryOfResidence",
        "RegionOfResidence", "PatientInsurancePlanCodeSequence", "ResponsibleOrganization",
        "AccessionNumber", "StudyID", "AdmissionID", "RequestedProcedureID",
        "PerformedProcedureStepID", "ScheduledProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
        "StationName", "DeviceSerialNumber", "DetectorID", "GantryID", "PlateID",
        "CassetteID", "StudyDescription", "SeriesDescription", "ProtocolName",
        "PerformedProcedureStepDescription", "RequestedProcedureDescription",
        "ImageComments", "PatientComments", "AdditionalPatientHistory",
        "AdmittingDiagnosesDescription", "CurrentPatientLocation",
        "PatientInstitutionResidence", "RequestingService", "TextValue",
        "ContentCreatorName", "PersonName",
    }
)  # fmt: skip

#: The root of the standard UIDs (SOP classes, transfer syntaxes, coding schemes).
_STANDARD_UID_ROOT = "1.2.840.10008."


def _identifying(keyword: str, vr: str, value: str) -> bool:
    if vr in ("PN", "DA", "DT") or keyword in IDENTIFYING_KEYWORDS:
        return True
    if vr == "UI":
        standard = value.startswith(_STANDARD_UID_ROOT)
        return not standard and not keyword.endswith(("ClassUID", "TransferSyntaxUID"))
    return False


def identifying_values(ds: Any) -> list[tuple[str, str, str]]:
    """Every identifying value of a DICOM dataset, its sequences included.

    Parameters
    ----------
    ds
        A ``pydicom.Dataset`` (read with ``stop_before_pixels=True`` is enough).

    Returns
    -------
    list of (keyword, VR, value)
        One entry per value (a multi-valued element gives several): person names,
        dates, instance UIDs and the :data:`IDENTIFYING_KEYWORDS`.  Private elements
        count only when they are names or dates.  Empty values are left out.
    """
    from pydicom.multival import MultiValue

    out: list[tuple[str, str, str]] = []

    def walk(d: Any) -> None:
        for tag in list(d.keys()):
            try:
                elem = d[tag]
            except Exception:  # noqa: BLE001 - an undecodable value holds nothing we can read
                continue
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
                continue
            keyword = elem.keyword or str(elem.tag)
            if elem.tag.is_private and elem.VR not in ("PN", "DA", "DT"):
                continue
            raw = elem.value
            values = list(raw) if isinstance(raw, MultiValue | list | tuple) else [raw]
            for v in values:
                if v is None or isinstance(v, bytes | bytearray):
                    continue
                text = str(v).strip()
                if text and _identifying(keyword, elem.VR, text):
                    out.append((keyword, elem.VR, text))

    walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta)
    return out


#: Words ``medpipe audit`` never searches on their own (they are not identifying, and
#: are everywhere medpipe writes): common English words, medpipe's own vocabulary,
#: imaging and hospital terms, file extensions.  A value made of them only (``CT HEAD``)
#: is not searched; one with a rarer word (``SPRINGFIELD GENERAL HOSPITAL``) is.
AUDIT_COMMON_WORDS: frozenset[str] = frozenset(
    """
    about after again also another archive here there where some none nobody
    somebody someone anyone unnamed untitled anonymized anonymised removed text enter
    html meta charset utf8 utf style class title doctype lang code details summary
    figure figcaption font family margin border padding background solid collapse
    align inline block display vertical width height auto size sans serif system
    http https localhost status link href span strong table
     axial before being between both brain breast
    cannot center centre chest city clinic clinical college contrast copy coronal county
    data date default derived description diagnostic dicom dicomdir does done down each
    east emergency every example export exports false file files first folder from full
    general have head health healthcare high hospital image imaging images index info
    input institute into just label labels large last lateral left level line local
    lossless lossy lung main mask masks medical memorial missing more most much name
    national nifti none north note null only original other output over part patient
    patients pelvis phantom primary private public radiology raw record regional report
    reports research right saint same sample samples sagittal scan scanner scans screen
    second secondary series several should site slice slices small south spine state
    station street studies study such take test tests that their them then there these
    they this those three through time today total true twice under unit university
    upper very view west what when where which while will with within without work
    would your abdomen ankle knee hand foot wrist neck thorax liver kidney heart spleen
    whole body cardiac dental mammo mammography ultrasound tomography resonance nuclear
    magnetic computed tomographic localizer scout topogram recon reconstruction
    dose plan struct rtstruct rtdose rtplan rtimage waveform segmentation
    jpeg jpg png tif tiff nii npz json csv txt yaml zip dump icc gzip zarr parquet
    skops html bmp dcm ima raw rle lossy big little endian explicit implicit meta
    big bigend litend littleend expb emri anatomical example example4d example_nifti2
    features feature preprocessed models model scores score catalog locks lock train
    training val validation split splits store group groups array arrays chunk chunks
    medpipe ingest ingested nightly run runs flow flows task tasks prefect dask worker
    workers cluster shape spacing origin direction modality rescale header source
    sources hash hashes version key keys value values table tables color colour grey
    gray rgb ybr mono monochrome monochrome1 monochrome2 palette frame frames multi
    single dimension dimensions pixel pixels voxel voxels string strings number numbers
    quarantine quarantined skipped unchanged changed new old broken truncated corrupt
    invalid valid empty good left right front back case cases subject subjects visit
    visits exam exams acquisition protocol sequence sequences series1 unknown anonymous
    anon deid identified male female other baseline followup follow month week year
    years months weeks days hour hours minute minutes second seconds
    """.split()
)
