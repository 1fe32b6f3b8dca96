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


# --------------------------------------------------------------------------- file keys


def test_file_key_is_an_hmac_of_the_relative_path() -> None:
    import hashlib
    import hmac

    from medpipe.deid import FILE_KEY_PREFIX, KEY_LENGTH, file_key

    key = file_key("SMITH_JOHN_12345/ct/1.dcm", secret=b"s")
    digest = hmac.new(b"s", b"file:SMITH_JOHN_12345/ct/1.dcm", hashlib.sha256).hexdigest()
    assert key == FILE_KEY_PREFIX + digest[:KEY_LENGTH]
    assert file_key("SMITH_JOHN_12345/ct/1.dcm", secret=b"t") != key
    assert file_key("SMITH_JOHN_12345/ct/2.dcm", secret=b"s") != key


def test_redact_paths_relative_absolute_and_unknown(tmp_path: Path) -> None:
    from medpipe.deid import file_key, redact_paths

    root = str(tmp_path / "arch")
    rel = "SMITH_JOHN_12345/ct/1.dcm"
    k = file_key(rel, secret=b"s")
    text = (
        f"series not ingested: {rel}: bad; cannot identify image file '{root}/{rel}'; "
        f"also {root}/SMITH_JOHN_12345/other.png, x{rel} and {root}"
    )
    out = redact_paths(text, [rel], secret=b"s", archive=root)
    assert "SMITH" not in out.replace(f"x{rel}", "")
    assert out.startswith(f"series not ingested: {k}: bad; cannot identify image file '{k}'")
    assert file_key("SMITH_JOHN_12345/other.png", secret=b"s") in out
    assert f"x{rel}" in out  # inside a longer name: another file, not this one
    assert out.endswith("<archive>")
    assert redact_paths("no path here", [rel], secret=b"s", archive=root) == "no path here"


def test_identifying_values_of_a_reheadered_ct() -> None:
    from medpipe.audit.values import identifying_values

    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    ds.PatientName = "DOE^JANE"
    ds.AccessionNumber = "A7788"
    ds.PatientBirthDate = "19800102"
    ds.add_new(0x00091010, "LO", "vendor text")  # private, not a name or date
    seq = pydicom.Dataset()
    seq.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    ds.ReferencedImageSequence = [seq]
    got = {(k, v) for k, _, v in identifying_values(ds)}
    assert {("PatientName", "DOE^JANE"), ("AccessionNumber", "A7788"),
            ("PatientBirthDate", "19800102"), ("ReferencedSOPInstanceUID", "1.2.3.4.5.6"),
            ("StudyInstanceUID", ds.StudyInstanceUID)} <= got  # fmt: skip
    keywords = {k for k, _ in got}
    assert "SOPClassUID" not in keywords and "TransferSyntaxUID" not in keywords
    assert "vendor text" not in {v for _, v in got}
    assert not keywords & BASIC_PROFILE_KEEP
