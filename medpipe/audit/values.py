"""The identifying values ``medpipe audit`` collects from an archive's headers.

What counts as identifying (:data:`IDENTIFYING_KEYWORDS`, person names, dates and
instance UIDs) and the words never searched on their own (:data:`COMMON_WORDS`).  The
de-identification that keeps such values out of the store is :mod:`medpipe.deid`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMMON_WORDS", "IDENTIFYING_KEYWORDS", "identifying_values"]

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
COMMON_WORDS: frozenset[str] = frozenset(
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
