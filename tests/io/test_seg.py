"""DICOM SEG objects: highdicom-written SEGs against the masks they were made from.

The image series is pydicom's real ``CT_small.dcm`` moved along z; the SEG objects are
written by highdicom (the reference implementation) from known masks, so the masks that
ingest stores must equal them voxel for voxel.  The real SEG files that pydicom and
pydicom-data ship reference series that are not in their archives: they must be found
as masks and set aside with that reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medpipe import catalog, ingest, store
from medpipe.errors import SeriesGeometryError
from medpipe.io.dicom import probe_dicom, read_dicom_series
from medpipe.io.rtstruct import rasterize_rtstruct
from medpipe.io.seg import rasterize_seg
from tests.io._seg import ct_series, two_masks, write_seg

SECRET = b"test-secret"
NO_IMAGE = "mask without its image (referenced series not found in the archive)"


def test_binary_seg_matches_its_masks(tmp_path: Path) -> None:
    sources = ct_series(tmp_path / "ct")
    masks = two_masks()
    write_seg(tmp_path / "seg" / "s.dcm", sources, masks, ["Tumour core", "Tumour core"])
    probe = probe_dicom(tmp_path, "seg/s.dcm")
    assert (probe.role, probe.group) == ("mask", sources[0].SeriesInstanceUID)
    image = read_dicom_series(tmp_path, [f"ct/{k}.dcm" for k in range(3)])
    out = rasterize_seg(tmp_path, "seg/s.dcm", image)
    assert sorted(out) == ["Tumour_core", "Tumour_core_2"]  # equal labels stay apart
    for i, name in enumerate(["Tumour_core", "Tumour_core_2"]):
        assert out[name].dtype == np.uint8 and out[name].shape == image.spatial_shape
        np.testing.assert_array_equal(out[name], masks[..., i])


def test_fractional_seg_is_cut_at_one_half(tmp_path: Path) -> None:
    sources = ct_series(tmp_path / "ct")
    rng = np.random.default_rng(0)
    prob = rng.random((3, 128, 128)).astype(np.float32)
    write_seg(tmp_path / "seg.dcm", sources, prob, ["p"], kind="FRACTIONAL")
    image = read_dicom_series(tmp_path, [f"ct/{k}.dcm" for k in range(3)])
    (mask,) = rasterize_seg(tmp_path, "seg.dcm", image).values()
    # highdicom stores round(p * 200); the mask is stored >= 100.
    np.testing.assert_array_equal(mask, np.round(prob * 200) >= 100)


def test_labelmap_seg_gives_one_mask_per_segment(tmp_path: Path) -> None:
    sources = ct_series(tmp_path / "ct")
    masks = two_masks()
    labelmap = np.where(masks[..., 1], 2, np.where(masks[..., 0], 1, 0)).astype(np.uint8)
    write_seg(tmp_path / "seg.dcm", sources, labelmap, ["a", "b"], kind="LABELMAP")
    image = read_dicom_series(tmp_path, [f"ct/{k}.dcm" for k in range(3)])
    out = rasterize_seg(tmp_path, "seg.dcm", image)
    np.testing.assert_array_equal(out["a"], labelmap == 1)
    np.testing.assert_array_equal(out["b"], labelmap == 2)


def test_seg_on_another_grid_is_a_geometry_error(tmp_path: Path) -> None:
    sources = ct_series(tmp_path / "ct")
    shifted = ct_series(tmp_path / "other", z0=-75.7 + 2.5)  # half a slice off
    for ds in shifted:
        ds.FrameOfReferenceUID = sources[0].FrameOfReferenceUID
        ds.SeriesInstanceUID = sources[0].SeriesInstanceUID
    write_seg(tmp_path / "seg.dcm", shifted, two_masks()[..., :1], ["a"])
    image = read_dicom_series(tmp_path, [f"ct/{k}.dcm" for k in range(3)])
    with pytest.raises(SeriesGeometryError, match="slice plane"):
        rasterize_seg(tmp_path, "seg.dcm", image)

    other, for_uid = ct_series(tmp_path / "third"), pydicom.uid.generate_uid()
    for ds in other:
        ds.FrameOfReferenceUID = for_uid
    write_seg(tmp_path / "seg2.dcm", other, two_masks()[..., :1], ["a"])
    with pytest.raises(SeriesGeometryError, match="frame of reference"):
        rasterize_seg(tmp_path, "seg2.dcm", image)


def test_ingested_seg_segments_are_ngff_labels(tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", str(tmp_path / "store.zarr")
    sources = ct_series(archive / "ct")
    masks = two_masks()
    write_seg(archive / "seg" / "s.dcm", sources, masks, ["GTV", "Node 1"])
    summary = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert (summary.series_ingested, summary.quarantined) == (1, 0)
    cur = catalog.current(out)
    assert cur.loc["seg/s.dcm", "status"] == "ingested"
    key = cur.loc["seg/s.dcm", "series"]
    assert cur.loc["ct/0.dcm", "series"] == key
    labels = store.open_labels(out, f"images/{key}")
    assert sorted(labels) == ["GTV", "Node_1"]
    for i, name in enumerate(["GTV", "Node_1"]):
        np.testing.assert_array_equal(labels[name].values > 0, masks[..., i])


def test_a_seg_that_arrives_before_its_image_is_attached_when_the_image_comes(
    tmp_path: Path,
) -> None:
    """Set aside with the reason first; the night its series arrives, it becomes labels."""
    archive, out = tmp_path / "archive", str(tmp_path / "store.zarr")
    sources = ct_series(tmp_path / "later")
    write_seg(archive / "seg.dcm", sources, two_masks(), ["GTV", "Node"])
    first = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert first.series_ingested == 0
    assert catalog.current(out).loc["seg.dcm", "reason"] == NO_IMAGE
    shutil.copytree(tmp_path / "later", archive / "ct")
    second = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert (second.new, second.unchanged, second.series_ingested) == (3, 1, 1)
    cur = catalog.current(out)
    assert cur.loc["seg.dcm", "status"] == "ingested"
    labels = store.open_labels(out, f"images/{cur.loc['seg.dcm', 'series']}")
    assert sorted(labels) == ["GTV", "Node"]


def _is_seg_mask(folder: Path, name: str) -> bool:
    probe = probe_dicom(folder, name)
    return probe.role == "mask" and probe.detail.get("modality") == "SEG"


@pytest.mark.parametrize("source", ["pydicom", "shared"])
def test_real_seg_files_without_their_series_are_set_aside(
    source: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if source == "pydicom":
        files = [Path(get_testdata_file(n)) for n in ("liver_1frame.dcm", "liver_expb_1frame.dcm")]
    else:
        files = [request.getfixturevalue("shared_data") / "dicom/pydicom_data_subset/liver.dcm"]
    archive, out = tmp_path / "archive", str(tmp_path / "store.zarr")
    archive.mkdir()
    for f in files:
        shutil.copy(f, archive / f.name)
    assert all(_is_seg_mask(archive, f.name) for f in files)
    summary = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert summary.series_ingested == 0
    cur = catalog.current(out)
    for f in files:
        assert cur.loc[f.name, "reason"] == NO_IMAGE


def test_ibsi_rtstruct_as_seg_ingests_to_the_same_label(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom" / "ibsi_sts" / "STS_002" / "CT"
    archive = tmp_path / "archive"
    shutil.copytree(src / "image", archive / "image")
    rels = sorted(p.relative_to(archive).as_posix() for p in (archive / "image").glob("*.dcm"))
    image = read_dicom_series(archive, rels)
    shutil.copy(src / "mask" / "RS.dcm", tmp_path / "RS.dcm")
    (name,) = [k for k in rasterize_rtstruct(tmp_path, "RS.dcm", image) if k.startswith("GTV")]
    reference = rasterize_rtstruct(tmp_path, "RS.dcm", image)[name]
    normal = np.asarray(image.direction[0])  # array axis 0 in LPS: the slice order
    datasets = [pydicom.dcmread(archive / r) for r in rels]
    ordered = sorted(datasets, key=lambda ds: float(np.dot(ds.ImagePositionPatient, normal)))
    write_seg(archive / "seg" / "gtv.dcm", ordered, reference.astype(bool), ["GTV Mass"])

    out = str(tmp_path / "store.zarr")
    summary = ingest.ingest_archive(str(archive), out, secret=SECRET)
    assert (summary.series_ingested, summary.quarantined) == (1, 0)
    key = catalog.current(out).loc["seg/gtv.dcm", "series"]
    labels = store.open_labels(out, f"images/{key}")
    assert reference.sum() > 0
    np.testing.assert_array_equal(labels["GTV_Mass"].values > 0, reference > 0)
