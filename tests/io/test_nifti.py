"""NIfTI reader: geometry against nibabel's affine and the DICOM originals, masks, errors."""

from __future__ import annotations

import glob
import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.affines import apply_affine
from nibabel.testing import data_path

from medpipe.errors import InvalidSourceError, SeriesGeometryError, SourceError
from medpipe.io.nifti import mask_image_of, probe_nifti, read_nifti

NIB = Path(data_path)
LPS = np.diag([-1.0, -1.0, 1.0])


def _positions(series, idx: np.ndarray) -> np.ndarray:
    """LPS positions of zyx indices from the Series geometry (the base.py formula)."""
    d = np.asarray(series.direction)
    sp = np.asarray(series.spacing)
    return np.asarray(series.origin) + (idx * sp) @ d


def _check_against_nibabel(series, img) -> None:
    rng = np.random.default_rng(0)
    shape3 = img.shape[:3]
    ijk = np.stack([rng.integers(0, n, 20) for n in shape3], axis=1)
    ijk = np.vstack([ijk, [0, 0, 0], np.array(shape3) - 1])
    expected = apply_affine(img.affine, ijk) @ LPS.T
    zyx = ijk[:, ::-1]
    np.testing.assert_allclose(_positions(series, zyx), expected, atol=1e-4)
    ref = np.asanyarray(img.dataobj)
    while ref.ndim > 3 and ref.shape[-1] == 1:
        ref = ref[..., 0]
    got = series.data
    if got.ndim == 4:  # (t, z, y, x) vs nibabel (i, j, k, t)
        ref = ref.transpose(3, 2, 1, 0)
    else:
        ref = ref.transpose(2, 1, 0)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(
    "name, version, ndim",
    [
        ("anatomical.nii", 1, 3),
        ("example4d.nii.gz", 1, 4),
        ("example_nifti2.nii.gz", 2, 4),
        ("standard.nii.gz", 1, 3),
    ],
)
def test_geometry_and_voxels_match_nibabel(name: str, version: int, ndim: int) -> None:
    probe = probe_nifti(NIB, name)
    assert probe.kind == "nifti" and probe.role == "image" and probe.group == name
    assert probe.detail["nifti_version"] == version
    s = read_nifti(NIB, [name])
    img = nib.load(NIB / name)
    assert s.uid == name and s.sources == [name]
    assert s.axes == (("t", "z", "y", "x") if ndim == 4 else ("z", "y", "x"))
    assert s.data.dtype == img.get_data_dtype().newbyteorder("=")  # on-disk dtype kept
    assert s.data.dtype.isnative
    assert s.rescale == {}
    # spacing = voxel sizes reported by nibabel (zyx order)
    np.testing.assert_allclose(s.spacing, img.header.get_zooms()[:3][::-1], rtol=1e-5)
    d = np.asarray(s.direction)
    np.testing.assert_allclose(d @ d.T, np.eye(3), atol=1e-5)
    _check_against_nibabel(s, img)


def test_big_endian_file_is_native() -> None:
    img = nib.load(NIB / "anatomical.nii")
    assert img.get_data_dtype().byteorder == ">"
    s = read_nifti(NIB, ["anatomical.nii"])
    assert s.data.dtype == np.dtype("int16") and s.data.flags.c_contiguous


def test_scaled_nifti_becomes_float32(tmp_path: Path) -> None:
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(raw, np.diag([2.0, 3.0, 4.0, 1.0]))
    img.header.set_slope_inter(2.5, -7.0)
    nib.save(img, tmp_path / "scaled.nii")
    s = read_nifti(tmp_path, ["scaled.nii"])
    assert s.data.dtype == np.float32
    assert s.rescale == {"slope": 2.5, "intercept": -7.0, "applied": True}
    ref = nib.load(tmp_path / "scaled.nii").get_fdata().transpose(2, 1, 0)
    np.testing.assert_allclose(s.data, ref, rtol=1e-6)
    assert s.spacing == (4.0, 3.0, 2.0)
    # RAS diag affine: x axis points to L in LPS → -1, y to P → -1
    np.testing.assert_allclose(s.direction, [[0, 0, 1], [0, -1, 0], [-1, 0, 0]])


def _make_mask(tmp_path: Path, image_name: str, mask_name: str) -> np.ndarray:
    img = nib.load(NIB / "anatomical.nii")
    nib.save(img, tmp_path / image_name)
    mask = (np.asanyarray(img.dataobj) > np.percentile(img.dataobj, 90)).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, img.affine), tmp_path / mask_name)
    return mask


@pytest.mark.parametrize(
    "image_name, mask_name, roi",
    [
        ("case_image.nii", "case_mask.nii.gz", "mask"),
        ("case.nii.gz", "case_seg_tumour.nii.gz", "seg_tumour"),
        ("case.nii", "case_labels.nii", "labels"),
        ("case_image.nii.gz", "case_mask.nii", "mask"),
    ],
)
def test_masks_recognised_by_name(
    tmp_path: Path, image_name: str, mask_name: str, roi: str
) -> None:
    mask = _make_mask(tmp_path, image_name, mask_name)
    assert mask_image_of(tmp_path, mask_name) == image_name
    assert mask_image_of(tmp_path, image_name) is None
    p = probe_nifti(tmp_path, mask_name)
    assert (p.role, p.group) == ("mask", image_name)
    assert probe_nifti(tmp_path, image_name).role == "image"
    s = read_nifti(tmp_path, [image_name, mask_name])
    assert s.uid == image_name and set(s.sources) == {image_name, mask_name}
    assert list(s.labels) == [roi]
    assert s.labels[roi].dtype == np.uint8
    np.testing.assert_array_equal(s.labels[roi], mask.transpose(2, 1, 0))


def test_mask_without_sibling_is_an_image(tmp_path: Path) -> None:
    shutil.copy(NIB / "anatomical.nii", tmp_path / "lonely_mask.nii")
    p = probe_nifti(tmp_path, "lonely_mask.nii")
    assert (p.role, p.group) == ("image", "lonely_mask.nii")


def test_mask_on_other_grid_is_a_geometry_error(tmp_path: Path) -> None:
    img = nib.load(NIB / "anatomical.nii")
    nib.save(img, tmp_path / "a_image.nii")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), img.affine), tmp_path / "a_mask.nii")
    with pytest.raises(SeriesGeometryError):
        read_nifti(tmp_path, ["a_image.nii", "a_mask.nii"])


def test_truncated_and_garbage_files_are_invalid(tmp_path: Path) -> None:
    raw = (NIB / "anatomical.nii").read_bytes()
    (tmp_path / "short.nii").write_bytes(raw[: len(raw) - 100])
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw)[:-200])
    (tmp_path / "noise.nii").write_bytes(b"not a nifti header at all" * 20)
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    for name in ("short.nii", "short.nii.gz", "noise.nii", "empty.nii.gz"):
        with pytest.raises(InvalidSourceError) as info:
            probe_nifti(tmp_path, name)
        assert info.value.path == name
        assert isinstance(info.value, ValueError)
        with pytest.raises(SourceError):
            read_nifti(tmp_path, [name])


def test_two_images_in_one_group_is_invalid() -> None:
    with pytest.raises(InvalidSourceError):
        read_nifti(NIB, ["anatomical.nii", "functional.nii"])


# ----------------------------------------------------------------- real data (shared)


def test_shared_nibabel_and_dipy_files(shared_data: Path) -> None:
    root = shared_data / "nifti"
    for rel in (
        "nibabel/anatomical.nii",
        "nibabel/example_nifti2.nii.gz",
        "dipy/aniso_vox.nii.gz",
        "dipy/S0_10slices.nii.gz",
    ):
        s = read_nifti(root, [rel])
        _check_against_nibabel(s, nib.load(root / rel))
    aniso = read_nifti(root, ["dipy/aniso_vox.nii.gz"])
    assert len({round(v, 3) for v in aniso.spacing}) > 1  # really anisotropic


@pytest.mark.parametrize("patient", ["STS_002", "STS_019"])
def test_ibsi_nifti_matches_dicom_geometry(shared_data: Path, patient: str) -> None:
    """The NIfTI geometry equals the DICOM series it came from (first-slice IPP etc.)."""
    root = shared_data / "nifti" / "ibsi_sts"
    probe = probe_nifti(root, f"{patient}/CT_mask.nii.gz")
    assert (probe.role, probe.group) == ("mask", f"{patient}/CT_image.nii.gz")
    s = read_nifti(root, [f"{patient}/CT_image.nii.gz", f"{patient}/CT_mask.nii.gz"])
    assert s.modality == "CT"
    files = glob.glob(str(shared_data / "dicom" / "ibsi_sts" / patient / "CT" / "image" / "*.dcm"))
    ds = sorted(
        (pydicom.dcmread(f) for f in files),
        key=lambda d: float(
            np.dot(np.cross(*np.reshape(d.ImageOrientationPatient, (2, 3))), d.ImagePositionPatient)
        ),
    )
    first, last = ds[0], ds[-1]
    assert s.data.shape == (len(ds), first.Rows, first.Columns)
    np.testing.assert_allclose(s.origin, [float(v) for v in first.ImagePositionPatient], atol=1e-3)
    row, col = np.reshape([float(v) for v in first.ImageOrientationPatient], (2, 3))
    np.testing.assert_allclose(s.direction[2], row, atol=1e-5)  # x runs along a row
    np.testing.assert_allclose(s.direction[1], col, atol=1e-5)
    dz = np.linalg.norm(np.subtract(last.ImagePositionPatient, first.ImagePositionPatient))
    np.testing.assert_allclose(s.spacing[0], dz / (len(ds) - 1), rtol=1e-4)
    np.testing.assert_allclose(s.spacing[1:], [float(v) for v in first.PixelSpacing], rtol=1e-6)
    for k in (0, len(ds) // 2, len(ds) - 1):
        hu = ds[k].pixel_array * float(ds[k].RescaleSlope) + float(ds[k].RescaleIntercept)
        np.testing.assert_allclose(s.data[k], hu)
        np.testing.assert_allclose(
            _positions(s, np.array([[k, 0, 0]]))[0],
            [float(v) for v in ds[k].ImagePositionPatient],
            atol=1e-2,
        )
    mask = s.labels["mask"]
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
