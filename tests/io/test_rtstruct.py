"""RTSTRUCT rasterisation: against the IBSI NIfTI masks and an independent point test."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from medpipe.errors import InvalidSourceError, SeriesGeometryError
from medpipe.io.base import Series
from medpipe.io.dicom import probe_dicom, read_dicom_series
from medpipe.io.rtstruct import rasterize_rtstruct, sanitize_roi_name

IBSI_PATIENTS = [
    "STS_002", "STS_003", "STS_008", "STS_012", "STS_015", "STS_018",
    "STS_019", "STS_024", "STS_032", "STS_035", "STS_041", "STS_042",
]  # fmt: skip
FOR_UID = "1.2.3.4.5"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum((a > 0) & (b > 0)) / (np.sum(a > 0) + np.sum(b > 0)))


def _check_ibsi(shared: Path, patient: str, modality: str) -> float:
    root = shared / "dicom"
    folder = f"ibsi_sts/{patient}/{modality}"
    rels = sorted(p.relative_to(root).as_posix() for p in (root / folder / "image").glob("*.dcm"))
    series = read_dicom_series(root, rels)
    probe = probe_dicom(root, f"{folder}/mask/RS.dcm")
    assert probe.role == "mask" and probe.group == series.uid
    masks = rasterize_rtstruct(root, f"{folder}/mask/RS.dcm", series)
    (name,) = [k for k in masks if k.startswith("GTV_Mass")]
    mask = masks[name]
    assert mask.dtype == np.uint8 and mask.shape == series.spatial_shape
    ref = np.asarray(
        nib.load(shared / "nifti" / "ibsi_sts" / patient / f"{modality}_mask.nii.gz").dataobj
    ).transpose(2, 1, 0)
    return _dice(mask, ref)


def test_ibsi_mask_matches_nifti(shared_data: Path) -> None:
    for modality in ("CT", "MR_T1", "PET"):
        # Observed: voxel-for-voxel equal to MIRP's NIfTI masks (Dice 1.0) on all 36.
        assert _check_ibsi(shared_data, "STS_002", modality) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("patient", IBSI_PATIENTS[1:])
def test_ibsi_masks_all_patients(shared_data: Path, patient: str) -> None:
    for modality in ("CT", "MR_T1", "PET"):
        assert _check_ibsi(shared_data, patient, modality) > 0.99


# --------------------------------------------------------------------------- synthetic


def _image(shape: tuple[int, int, int] = (4, 20, 30)) -> Series:
    # Rotated-in-plane geometry so the index transform is exercised: array y runs along
    # LPS -x, array x along LPS +y.
    return Series(
        uid="img",
        sources=[],
        data=np.zeros(shape, dtype=np.int16),
        modality="CT",
        spacing=(2.5, 0.8, 1.2),
        origin=(10.0, -20.0, 30.0),
        direction=((0.0, 0.0, 1.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
        frame_of_reference_uid=FOR_UID,
    )


def _to_lps(image: Series, k: float, jj: np.ndarray, ii: np.ndarray) -> np.ndarray:
    o = np.asarray(image.origin)
    d = np.asarray(image.direction)
    sz, sy, sx = image.spacing
    return o + k * sz * d[0] + np.outer(jj * sy, d[1]) + np.outer(ii * sx, d[2])


def _write_rtstruct(path: Path, rois: dict[str, list[np.ndarray]], for_uid: str = FOR_UID) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for n, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = n
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = for_uid
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = n
        rc.ContourSequence = Sequence()
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.save_as(path, enforce_file_format=True)


def _reference_fill(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    """Even-odd fill of pixel centres with matplotlib (independent of skimage)."""
    jj, ii = np.mgrid[: shape[0], : shape[1]]
    centres = np.column_stack([jj.ravel(), ii.ravel()]).astype(float)
    out = np.zeros(shape[0] * shape[1], dtype=bool)
    for poly in polys:
        out ^= MplPath(poly).contains_points(centres)
    return out.reshape(shape)


def test_synthetic_polygon_with_hole(tmp_path: Path) -> None:
    image = _image()
    outer = np.array([[2.3, 3.1], [16.7, 4.2], [15.2, 25.6], [3.4, 22.9]])  # (j, i)
    inner = np.array([[6.5, 9.5], [11.5, 9.5], [11.5, 17.5], [6.5, 17.5]])
    tri = np.array([[1.2, 1.1], [8.3, 2.0], [4.1, 7.7]])
    contours = [
        _to_lps(image, 1, outer[:, 0], outer[:, 1]),
        _to_lps(image, 1, inner[:, 0], inner[:, 1]),
        _to_lps(image, 3, tri[:, 0], tri[:, 1]),
    ]
    _write_rtstruct(tmp_path / "rs.dcm", {"Tumour (GTV) #1": contours})
    masks = rasterize_rtstruct(tmp_path, "rs.dcm", image)
    assert list(masks) == ["Tumour__GTV___1"]
    mask = masks["Tumour__GTV___1"]
    expected = np.zeros(image.spatial_shape, dtype=bool)
    expected[1] = _reference_fill((20, 30), [outer, inner])
    expected[3] = _reference_fill((20, 30), [tri])
    np.testing.assert_array_equal(mask.astype(bool), expected)
    assert mask[1, 9, 13] == 0 and mask[1, 5, 13] == 1  # hole and ring


def test_off_plane_contour_is_a_geometry_error(tmp_path: Path) -> None:
    image = _image()
    sq = np.array([[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]])
    _write_rtstruct(tmp_path / "rs.dcm", {"a": [_to_lps(image, 1.5, sq[:, 0], sq[:, 1])]})
    with pytest.raises(SeriesGeometryError, match="slice plane"):
        rasterize_rtstruct(tmp_path, "rs.dcm", image)
    _write_rtstruct(tmp_path / "rs2.dcm", {"a": [_to_lps(image, 7, sq[:, 0], sq[:, 1])]})
    with pytest.raises(SeriesGeometryError, match="outside"):
        rasterize_rtstruct(tmp_path, "rs2.dcm", image)


def test_other_frame_of_reference_is_a_geometry_error(tmp_path: Path) -> None:
    image = _image()
    sq = np.array([[2.0, 2.0], [8.0, 2.0], [8.0, 8.0]])
    _write_rtstruct(tmp_path / "rs.dcm", {"a": [_to_lps(image, 1, sq[:, 0], sq[:, 1])]}, "9.9")
    with pytest.raises(SeriesGeometryError, match="frame of reference"):
        rasterize_rtstruct(tmp_path, "rs.dcm", image)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "rs.dcm").write_bytes(b"junk" * 50)
    with pytest.raises(InvalidSourceError):
        rasterize_rtstruct(tmp_path, "rs.dcm", _image())


def test_sanitize_roi_name() -> None:
    assert sanitize_roi_name("GTV_Mass-1.a") == "GTV_Mass-1.a"
    assert sanitize_roi_name("Parotid L/R (ü)") == "Parotid_L_R____"
    assert sanitize_roi_name("../..") == "_"  # never a path component like ".."
