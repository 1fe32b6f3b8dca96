"""DICOM reader: geometry against NIfTI references, transfer syntaxes, bad inputs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pydicom.fileset
import pytest

from medpipe.errors import (
    InvalidSourceError,
    SeriesGeometryError,
    SourceError,
    SourceTooLargeError,
    UnsupportedSourceError,
)
from medpipe.io.dicom import probe_dicom, read_dicom_series, read_dicomdir

#: pydicom's bundled test files (installed with pydicom; no shared data needed).
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"

IBSI_PATIENTS = [
    "STS_002", "STS_003", "STS_008", "STS_012", "STS_015", "STS_018",
    "STS_019", "STS_024", "STS_032", "STS_035", "STS_041", "STS_042",
]  # fmt: skip
MODALITIES = ["CT", "MR_T1", "PET"]


def _dcm(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _series_rels(root: Path, folder: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / folder).glob("*.dcm"))


def _nifti_reference(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(zyx data, zyx spacing, LPS origin, LPS direction rows z,y,x) of a NIfTI file."""
    img = nib.load(path)
    data = np.asarray(img.dataobj).transpose(2, 1, 0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    cols = affine[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    direction = (cols / spacing).T[::-1]  # rows for array axes z, y, x
    return data, spacing[::-1], affine[:3, 3], direction


# --------------------------------------------------------------------------- IBSI vs NIfTI


def _check_ibsi(shared: Path, patient: str, modality: str) -> None:
    root = shared / "dicom"
    rels = _series_rels(root, f"ibsi_sts/{patient}/{modality}/image")
    probes = [probe_dicom(root, r) for r in rels]
    assert {p.group for p in probes} == {probes[0].group}
    assert all(p.role == "image" and p.detail["n_frames"] == 1 for p in probes)
    series = read_dicom_series(root, list(reversed(rels)))  # input order must not matter
    ref, spacing, origin, direction = _nifti_reference(
        shared / "nifti" / "ibsi_sts" / patient / f"{modality}_image.nii.gz"
    )
    assert series.axes == ("z", "y", "x")
    assert series.data.shape == ref.shape
    np.testing.assert_allclose(series.spacing, spacing, atol=1e-3)
    np.testing.assert_allclose(series.origin, origin, atol=1e-3)
    np.testing.assert_allclose(series.direction, direction, atol=1e-6)
    assert series.uid == probes[0].group
    if modality == "PET":
        # The NIfTI holds float32(raw) * float32(slope) per slice; we compute in float64
        # and round once, so the two agree to within one float32 ulp.
        assert series.data.dtype == np.float32
        assert series.rescale["applied"] and isinstance(series.rescale["slope"], list)
        assert series.rescale["units"] == "GML"
        np.testing.assert_array_max_ulp(series.data, ref, maxulp=1)
        # ... and the reference's exact recipe, rebuilt from the raw DICOM, is bit-equal.
        dss = sorted((_dcm(root / r) for r in rels), key=lambda d: float(d.SliceLocation))
        rebuilt = np.stack(
            [d.pixel_array.astype(np.float32) * np.float32(d.RescaleSlope) for d in dss]
        )
        np.testing.assert_array_equal(rebuilt, ref)
    else:
        # CT/MR: integer pixels with identity rescale; the NIfTI stores them as float32.
        assert np.issubdtype(series.data.dtype, np.integer)
        assert not series.rescale["applied"]
        np.testing.assert_array_equal(series.data.astype(np.float32), ref)
    if modality == "CT":
        assert series.rescale["type"] == "HU"


def test_ibsi_one_patient_matches_nifti(shared_data: Path) -> None:
    for modality in MODALITIES:
        _check_ibsi(shared_data, "STS_002", modality)


@pytest.mark.slow
@pytest.mark.parametrize("patient", IBSI_PATIENTS[1:])
def test_ibsi_all_patients_match_nifti(shared_data: Path, patient: str) -> None:
    for modality in MODALITIES:
        _check_ibsi(shared_data, patient, modality)


def test_ibsi_instance_numbers_are_not_used_for_sorting(shared_data: Path) -> None:
    root = shared_data / "dicom"
    rels = _series_rels(root, "ibsi_sts/STS_002/CT/image")
    assert min(int(_dcm(root / r).InstanceNumber) for r in rels) == 0
    series = read_dicom_series(root, rels)
    z = [float(_dcm(root / r).ImagePositionPatient[2]) for r in series.sources]
    assert z == sorted(z)


# --------------------------------------------------------------------------- geometry errors


def _copy_series(shared: Path, tmp_path: Path) -> list[str]:
    src = shared / "dicom" / "ibsi_sts" / "STS_002" / "MR_T1" / "image"
    dst = tmp_path / "series"
    shutil.copytree(src, dst)
    return sorted(p.relative_to(tmp_path).as_posix() for p in dst.glob("*.dcm"))


def _sorted_by_z(root: Path, rels: list[str]) -> list[str]:
    return sorted(rels, key=lambda r: float(_dcm(root / r).ImagePositionPatient[2]))


def test_missing_middle_slice_is_a_geometry_error(shared_data: Path, tmp_path: Path) -> None:
    rels = _sorted_by_z(tmp_path, _copy_series(shared_data, tmp_path))
    read_dicom_series(tmp_path, rels)  # intact copy reads
    del rels[len(rels) // 2]
    with pytest.raises(SeriesGeometryError, match="missing slice"):
        read_dicom_series(tmp_path, rels)


def test_changed_orientation_is_a_geometry_error(shared_data: Path, tmp_path: Path) -> None:
    rels = _sorted_by_z(tmp_path, _copy_series(shared_data, tmp_path))
    victim = tmp_path / rels[5]
    ds = _dcm(victim)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, -0.0998334]  # tilted 0.1 rad
    ds.save_as(victim)
    with pytest.raises(SeriesGeometryError, match="mixed orientation") as err:
        read_dicom_series(tmp_path, rels)
    assert rels[5] in str(err.value)


def _synthetic_stack(tmp_path: Path, z: list[float]) -> list[str]:
    """Copies of CT_small.dcm at the given z positions, InstanceNumber reversed."""
    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    x, y, _ = (float(v) for v in ds.ImagePositionPatient)
    base = ds.pixel_array.copy()
    rels = []
    for i, zi in enumerate(z):
        ds.ImagePositionPatient = [x, y, zi]
        ds.InstanceNumber = len(z) - i
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = (base + i).astype(base.dtype).tobytes()
        rel = f"s{i}.dcm"
        ds.save_as(tmp_path / rel)
        rels.append(rel)
    return rels


def test_synthetic_stack_sorted_by_position(tmp_path: Path) -> None:
    z = [10.0, -5.0, 5.0, 0.0, 15.0]
    rels = _synthetic_stack(tmp_path, z)
    series = read_dicom_series(tmp_path, rels)
    order = np.argsort(z)
    assert series.sources == [rels[i] for i in order]
    raw = _dcm(PYDICOM_FILES / "CT_small.dcm")
    slope, inter = float(raw.RescaleSlope), float(raw.RescaleIntercept)
    expected = np.stack([(raw.pixel_array + i) * slope + inter for i in order])
    np.testing.assert_allclose(series.data, expected.astype(np.float32))
    assert series.spacing[0] == pytest.approx(5.0)
    assert series.origin[2] == pytest.approx(-5.0)
    assert series.header["z_spacing_source"] == "ImagePositionPatient"
    # normal = row cosine x column cosine
    iop = np.array(raw.ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(series.direction[0], np.cross(iop[:3], iop[3:]), atol=1e-6)
    np.testing.assert_allclose(series.direction[1], iop[3:], atol=1e-6)
    np.testing.assert_allclose(series.direction[2], iop[:3], atol=1e-6)


@pytest.mark.parametrize(
    ("z", "match"),
    [
        ([0.0, 5.0, 15.0, 20.0], "missing slice"),
        ([0.0, 5.0, 5.0, 10.0], "duplicate"),
        ([0.0, 5.0, 10.5, 15.0], "uneven"),
    ],
)
def test_synthetic_stack_geometry_errors(tmp_path: Path, z: list[float], match: str) -> None:
    with pytest.raises(SeriesGeometryError, match=match):
        read_dicom_series(tmp_path, _synthetic_stack(tmp_path, z))


def test_uneven_spacing_within_tolerance_is_accepted(tmp_path: Path) -> None:
    rels = _synthetic_stack(tmp_path, [0.0, 5.0, 10.02, 15.0])
    assert read_dicom_series(tmp_path, rels, tolerance=0.01).spacing[0] == pytest.approx(5.0)


def test_single_slice_spacing_source() -> None:
    series = read_dicom_series(PYDICOM_FILES, ["CT_small.dcm"])
    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    assert series.spacing[0] == pytest.approx(float(ds.SliceThickness))
    assert series.header["z_spacing_source"] == "SliceThickness"
    assert series.origin == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))


# --------------------------------------------------------------------------- syntaxes

MR_SMALL = [
    "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
    "MR_small_padded.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]  # fmt: skip


def test_mr_small_variants_decode_identically() -> None:
    reference = _dcm(PYDICOM_FILES / "MR_small.dcm").pixel_array
    syntaxes = set()
    for name in MR_SMALL:
        probe = probe_dicom(PYDICOM_FILES, name)
        syntaxes.add(probe.detail["transfer_syntax"])
        series = read_dicom_series(PYDICOM_FILES, [name])
        assert series.data.dtype.isnative
        np.testing.assert_array_equal(series.data[0], reference, err_msg=name)
        assert series.spacing == pytest.approx((0.8, 0.3125, 0.3125))
    assert len(syntaxes) >= 6


def test_mr_small_variants_in_shared_data(shared_data: Path) -> None:
    root = shared_data / "dicom" / "pydicom_test_files"
    names = sorted(p.name for p in root.glob("MR_small*.dcm"))
    assert len(names) >= 8
    reference = _dcm(root / "MR_small.dcm").pixel_array
    for name in names:
        np.testing.assert_array_equal(read_dicom_series(root, [name]).data[0], reference)


def test_deflate() -> None:
    dfl = read_dicom_series(PYDICOM_FILES, ["image_dfl.dcm"])
    np.testing.assert_array_equal(dfl.data[0], _dcm(PYDICOM_FILES / "image_dfl.dcm").pixel_array)


#: pydicom's SC_rgb test pattern: colour of the bands at rows 5, 15, ... 95 (column 50),
#: as published in pydicom's own pixel-data tests.
SC_RGB_BANDS = [
    (255, 0, 0), (255, 128, 128), (0, 255, 0), (128, 255, 128), (0, 0, 255),
    (128, 128, 255), (0, 0, 0), (64, 64, 64), (192, 192, 192), (255, 255, 255),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "atol"),
    [("SC_rgb_rle.dcm", 0), ("SC_ybr_full_422_uncompressed.dcm", 5), ("SC_rgb_jpeg_dcmtk.dcm", 5)],
)
def test_colour_is_rgb(name: str, atol: int) -> None:
    series = read_dicom_series(PYDICOM_FILES, [name])
    assert series.axes == ("c", "y", "x") and series.data.shape == (3, 100, 100)
    assert len(series.spacing) == 2
    got = np.array([series.data[:, r, 50] for r in range(5, 100, 10)], dtype=int)
    np.testing.assert_allclose(got, np.array(SC_RGB_BANDS), atol=atol)


def test_ybr_multiframe_becomes_rgb_czyx() -> None:
    series = read_dicom_series(PYDICOM_FILES, ["examples_ybr_color.dcm"])
    assert series.axes == ("c", "z", "y", "x")
    assert series.data.shape == (3, 30, 240, 320)
    assert series.header.get("frames_along_z")


def test_rtdose_multiframe_along_grid_offsets() -> None:
    ds = _dcm(PYDICOM_FILES / "rtdose.dcm")
    series = read_dicom_series(PYDICOM_FILES, ["rtdose.dcm"])
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    assert series.spacing[0] == pytest.approx(float(np.diff(offsets).mean()))
    expected = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    np.testing.assert_allclose(series.data, expected.astype(np.float32), rtol=1e-6)
    assert series.rescale["type"] == str(ds.DoseUnits)


def test_enhanced_mr_syntaxes_identical(shared_data: Path) -> None:
    root = shared_data / "dicom" / "pydicom_data_subset"
    names = [
        "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm",
    ]  # fmt: skip
    reference = _dcm(root / "emri_small.dcm").pixel_array
    for name in names:
        series = read_dicom_series(root, [name])
        assert series.data.shape == (10, 64, 64)
        np.testing.assert_array_equal(series.data, reference, err_msg=name)
        # These copies carry no functional groups (no positions): frames go along z with
        # SpacingBetweenSlices, and the header says geometry is not from positions.
        assert series.spacing[0] == pytest.approx(1.2)
        assert series.header["z_spacing_source"] == "SpacingBetweenSlices"
        assert "geometry_source" in series.header


def test_enhanced_ct_per_frame_geometry(shared_data: Path) -> None:
    root = shared_data / "dicom" / "pydicom_data_subset"
    ds = _dcm(root / "eCT_Supplemental.dcm")
    series = read_dicom_series(root, ["eCT_Supplemental.dcm"])
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = ds.PerFrameFunctionalGroupsSequence

    def macro(i: int, name: str) -> pydicom.Dataset:
        return (frames[i].get(name) or shared.get(name))[0]

    iop = np.asarray(macro(0, "PlaneOrientationSequence").ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ipps = np.array(
        [macro(i, "PlanePositionSequence").ImagePositionPatient for i in range(len(frames))],
        float,
    )
    order = np.argsort(ipps @ normal)
    np.testing.assert_allclose(series.origin, ipps[order[0]])
    np.testing.assert_allclose(series.spacing[0], abs(np.diff(ipps @ normal)).mean())
    pvt = [macro(i, "PixelValueTransformationSequence") for i in range(len(frames))]
    expected = np.stack(
        [
            ds.pixel_array[i] * float(pvt[i].RescaleSlope) + float(pvt[i].RescaleIntercept)
            for i in order
        ]
    )
    np.testing.assert_allclose(series.data, expected.astype(np.float32))
    assert series.header["z_spacing_source"] == "ImagePositionPatient"


# --------------------------------------------------------------------------- probe & errors


def test_probe_detail() -> None:
    probe = probe_dicom(PYDICOM_FILES, "CT_small.dcm")
    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    assert probe.kind == "dicom" and probe.role == "image"
    assert probe.group == ds.SeriesInstanceUID
    assert probe.detail["rows"] == ds.Rows and probe.detail["cols"] == ds.Columns
    assert probe.detail["modality"] == "CT" and probe.detail["n_frames"] == 1
    json.dumps(probe.detail)


def test_too_large_is_refused_before_decoding() -> None:
    with pytest.raises(SourceTooLargeError):
        probe_dicom(PYDICOM_FILES, "CT_small.dcm", max_bytes=1000)
    with pytest.raises(SourceTooLargeError):
        read_dicom_series(PYDICOM_FILES, ["CT_small.dcm"], max_bytes=1000)


def test_absurd_declared_size(tmp_path: Path) -> None:
    ds = _dcm(PYDICOM_FILES / "CT_small.dcm")
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 10000
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(SourceTooLargeError, match=r"65535x65535x10000 frames.*-byte limit"):
        probe_dicom(tmp_path, "huge.dcm")


def test_non_images_are_unsupported() -> None:
    for name in ("rtplan.dcm", "reportsi.dcm", "waveform_ecg.dcm"):
        with pytest.raises(UnsupportedSourceError, match="without pixel data"):
            probe_dicom(PYDICOM_FILES, name)


def test_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"hello" * 100)
    with pytest.raises(InvalidSourceError, match="not a DICOM Part 10 file"):
        probe_dicom(tmp_path, "x.dcm")
    with pytest.raises(InvalidSourceError, match="file not found"):
        probe_dicom(tmp_path, "missing.dcm")


def test_truncated_copy(tmp_path: Path) -> None:
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])  # cut inside pixels
    with pytest.raises(InvalidSourceError, match="truncated"):
        probe_dicom(tmp_path, "cut.dcm")
    with pytest.raises(InvalidSourceError):
        read_dicom_series(tmp_path, ["cut.dcm"])


#: README.md's table of files that must be quarantined, not crash a run.
BAD_INPUTS = [
    "pydicom_test_files/MR_truncated.dcm",
    "pydicom_test_files/JPEG-lossy.dcm",
    "pydicom_test_files/JPEG2000-embedded-sequence-delimiter.dcm",
    "pydicom_data_subset/emri_small_jpeg_2k_lossless_too_short.dcm",
    "pydicom_test_files/rtplan_truncated.dcm",
    "pydicom_test_files/badVR.dcm",
    "pydicom_test_files/meta_missing_tsyntax.dcm",
    "pydicom_data_subset/OT-PAL-8-face.dcm",
    "pydicom_test_files/no_meta.dcm",
    "pydicom_test_files/ExplVR_BigEndNoMeta.dcm",
    "pydicom_test_files/ExplVR_LitEndNoMeta.dcm",
    "pydicom_test_files/nested_priv_SQ.dcm",
    "pydicom_test_files/dicomdirtests/DICOMDIR-empty.dcm",
    "pydicom_test_files/zipMR.gz",
    "pydicom_test_files/README.txt",
    "pydicom_test_files/crayons.icc",
]
#: Files of that table that are recovered: pydicom parses bad_sequence.dcm's odd
#: sequence encoding, and corrects the JPEG 2000 pixel-representation mismatch
#: (J2K codestream unsigned, header signed) - both decode to plausible CT slices.
RECOVERED = [
    "pydicom_data_subset/bad_sequence.dcm",
    "pydicom_test_files/J2K_pixelrep_mismatch.dcm",
]
EXPECTED_REASON = {
    "MR_truncated.dcm": "truncated",
    "JPEG-lossy.dcm": "corrupt JPEG codestream",
    "JPEG2000-embedded-sequence-delimiter.dcm": "corrupt JPEG 2000 codestream",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "badVR.dcm": "1A",
    "meta_missing_tsyntax.dcm": "Transfer Syntax",
    "nested_priv_SQ.dcm": "Bits Allocated",
    "DICOMDIR-empty.dcm": "empty DICOMDIR",
    "zipMR.gz": "not DICOM",
}


def _outcome(root: Path, rel: str) -> object:
    probe = probe_dicom(root, rel)
    if probe.role == "index":
        return read_dicomdir(root, rel)
    return read_dicom_series(root, [rel])


@pytest.mark.parametrize("rel", BAD_INPUTS)
def test_bad_inputs_are_quarantined(shared_data: Path, rel: str) -> None:
    root = shared_data / "dicom"
    with pytest.raises(InvalidSourceError) as err:
        _outcome(root, rel)
    message = str(err.value)
    assert "\n" not in message and rel in message
    expected = EXPECTED_REASON.get(Path(rel).name)
    if expected:
        assert expected in message


@pytest.mark.parametrize("rel", RECOVERED)
def test_recoverable_bad_inputs_decode_sanely(shared_data: Path, rel: str) -> None:
    root = shared_data / "dicom"
    series = read_dicom_series(root, [rel])
    ds = _dcm(root / rel)
    assert series.data.shape == (1, ds.Rows, ds.Columns)
    assert np.all(np.isfinite(series.data)) and series.data.std() > 0
    assert series.rescale["type"] == "HU"
    assert -3000 <= series.data.min() < 0 < series.data.max() <= 4000  # plausible HU


def test_every_inventory_file_has_a_clear_outcome(shared_data: Path) -> None:
    root = shared_data / "dicom"
    rels = [
        line.split("\t", 1)[0]
        for line in (root / "INVENTORY.tsv").read_text().splitlines()[1:]
        if not line.startswith("ibsi_sts/")
    ]
    outcomes = {"ok": 0, "error": 0}
    for rel in rels:
        try:
            _outcome(root, rel)
            outcomes["ok"] += 1
        except SourceError as exc:
            assert "\n" not in str(exc) and rel in str(exc)
            outcomes["error"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 20


# --------------------------------------------------------------------------- DICOMDIR & deid


def test_dicomdir(shared_data: Path) -> None:
    root = shared_data / "dicom"
    rel = "pydicom_test_files/dicomdirtests/DICOMDIR"
    probe = probe_dicom(root, rel)
    assert probe.role == "index"
    files = read_dicomdir(root, rel)
    assert len(files) == probe.detail["n_files"] == 31
    assert all((root / f).is_file() for f in files)
    # pydicom's FileSet gives the same set of files
    fs = pydicom.fileset.FileSet(_dcm(root / rel))
    assert {Path(i.path).resolve() for i in fs} == {(root / f).resolve() for f in files}


PHI = ["SIMPSON", "HOMER", "00007041776", "20200704", "SPRINGFIELD", "999887722"]


def test_deid_header_and_probe_have_no_phi(shared_data: Path) -> None:
    root = shared_data / "dicom"
    rel = "deid_data_humans/ctbrain1.dcm"
    raw = (root / rel).read_bytes()
    assert all(s.encode() in raw for s in PHI)  # the test can fail: PHI is in the file
    series = read_dicom_series(root, [rel])
    probe = probe_dicom(root, rel)
    text = json.dumps(series.header) + json.dumps(probe.detail) + json.dumps(series.rescale)
    for s in PHI:
        assert s not in text
    assert series.header["Modality"] == "CT"
