"""Basic-Profile header filter."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pydicom
import pydicom.data

from medpipe.deid import BASIC_PROFILE_KEEP, basic_profile_filter

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"

#: Attributes that PS3.15 Table E.1-1 (Basic Application Level Confidentiality Profile)
#: removes, empties or replaces (a representative part of the table).
E11_REMOVE = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientAge", "PatientWeight", "PatientSize", "PatientAddress", "OtherPatientIDs",
    "OtherPatientNames", "PatientComments", "PatientTelephoneNumbers", "EthnicGroup",
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "StationName",
    "DeviceSerialNumber", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime", "StudyInstanceUID", "SeriesInstanceUID",
    "SOPInstanceUID", "FrameOfReferenceUID", "StudyID", "StudyDescription",
    "SeriesDescription", "ImageComments", "ProtocolName", "RequestAttributesSequence",
    "AdditionalPatientHistory", "AdmittingDiagnosesDescription", "MedicalRecordLocator",
    "ContrastBolusAgent", "DerivationDescription", "RequestingPhysician",
    "ReferencedPatientSequence", "ReferencedStudySequence", "IssuerOfPatientID",
    "PatientBirthName", "PatientMotherBirthName", "MilitaryRank", "Occupation",
}  # fmt: skip


def _dcm(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def test_allow_list_is_disjoint_from_basic_profile() -> None:
    assert not BASIC_PROFILE_KEEP & E11_REMOVE
    assert all(pydicom.datadict.tag_for_keyword(k) is not None for k in BASIC_PROFILE_KEEP)


def test_filter_drops_identifiers_and_keeps_technical_values() -> None:
    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    header = basic_profile_filter(ds)
    json.dumps(header)  # JSON-serialisable
    assert not set(header) & E11_REMOVE
    assert header["Modality"] == "CT"
    assert header["KVP"] == float(ds.KVP)
    assert header["PixelSpacing"] == [float(v) for v in ds.PixelSpacing]
    text = json.dumps(header)
    for value in (str(ds.PatientName), str(ds.PatientID), ds.StudyDate, ds.SOPInstanceUID):
        assert value not in text


def test_filter_removes_planted_phi() -> None:
    ds = _dcm(PYDICOM_FILES / "MR_small.dcm")
    ds.PatientName = "DOE^JANE"
    ds.InstitutionName = "ACME HOSPITAL"
    ds.add_new(0x00091001, "LO", "PRIVATE-SECRET")
    ds.Manufacturer = "Vendor"
    header = basic_profile_filter(ds)
    text = json.dumps(header)
    assert "DOE" not in text and "ACME" not in text and "PRIVATE-SECRET" not in text
    assert header["Manufacturer"] == "Vendor"


def test_ctbrain_phi_absent(shared_data: Path) -> None:
    path = shared_data / "dicom" / "deid_data_humans" / "ctbrain1.dcm"
    ds = _dcm(path)
    assert "SIMPSON" in str(ds.PatientName)
    text = json.dumps(basic_profile_filter(ds))
    for s in ("SIMPSON", "HOMER", "00007041776", "20200704", "SPRINGFIELD", "999887722"):
        assert s not in text
