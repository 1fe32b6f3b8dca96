"""medpipe sample medmnist: one secondary-capture DICOM per image, fake PHI, labels.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from medpipe import ingest, store
from medpipe.deid import pseudonym
from medpipe.errors import ConfigError
from medpipe.sample import SECONDARY_CAPTURE, build_medmnist_archive

from .conftest import SECRET


def _files(archive: Path) -> list[Path]:
    return sorted((archive / "dicom").rglob("*.dcm"))


def test_archive_matches_npz(tiny_npz: Path, tmp_path: Path) -> None:
    archive = build_medmnist_archive(tiny_npz, tmp_path / "a", name="pneumoniamnist")
    data = np.load(tiny_npz)
    labels = pd.read_csv(archive / "labels.csv", dtype={"SeriesInstanceUID": str})
    files = _files(archive)
    assert len(files) == len(labels) == len(data["train_images"]) + len(data["val_images"])
    by_uid = labels.set_index("SeriesInstanceUID")
    patients = set()
    for f in files:
        ds = pydicom.dcmread(f)  # an independent reader of what we wrote
        assert ds.SOPClassUID == SECONDARY_CAPTURE
        assert ds.Modality == "CR"
        split, idx = f.stem.split("_")[1], int(f.stem.split("_")[2])
        np.testing.assert_array_equal(ds.pixel_array, data[f"{split}_images"][idx])
        row = by_uid.loc[ds.SeriesInstanceUID]
        assert row["split"] == split
        assert row["label"] == data[f"{split}_labels"][idx, 0]
        assert str(ds.PatientName) and ds.PatientID and ds.PatientBirthDate
        patients.add(ds.PatientID)
    assert len(patients) == len(files)  # one patient per image
    assert labels["SeriesInstanceUID"].is_unique
    # a feature config for these images; the CLI loads it with --config
    from medpipe.config import load_config
    from medpipe.features import FeatureConfig
    from medpipe.sample import MEDMNIST_FEATURE_FAMILIES

    cfg = load_config(FeatureConfig, archive / "features.yaml")
    assert cfg == FeatureConfig(families=MEDMNIST_FEATURE_FAMILIES)
    # a rebuild gives the same UIDs (and store keys)
    again = build_medmnist_archive(tiny_npz, tmp_path / "b", name="pneumoniamnist")
    pd.testing.assert_frame_equal(labels, pd.read_csv(again / "labels.csv",
                                                      dtype={"SeriesInstanceUID": str}))


def test_splits_limit_and_errors(tiny_npz: Path, tmp_path: Path) -> None:
    archive = build_medmnist_archive(tiny_npz, tmp_path / "a", name="breastmnist",
                                     splits=["val"], limit=5)
    labels = pd.read_csv(archive / "labels.csv")
    assert set(labels["split"]) == {"val"} and len(labels) == 5
    with pytest.raises(ConfigError):
        build_medmnist_archive(tiny_npz, tmp_path / "c", name="breastmnist", splits=["test"])


def test_several_images_per_patient(tiny_npz: Path, tmp_path: Path) -> None:
    archive = build_medmnist_archive(tiny_npz, tmp_path / "a", name="breastmnist",
                                     images_per_patient=3, splits=["train"])
    ids = [pydicom.dcmread(f).PatientID for f in _files(archive)]
    counts = pd.Series(ids).value_counts()
    assert (counts == 3).all() and len(counts) == len(ids) // 3


def test_ingested_without_phi(tiny_npz: Path, tmp_path: Path) -> None:
    archive = build_medmnist_archive(tiny_npz, tmp_path / "a", name="breastmnist", limit=6)
    out = str(tmp_path / "store.zarr")
    summary = ingest.ingest_archive(str(archive), out, secret=SECRET)
    groups = store.list_groups(out, "images")
    assert len(groups) == 12
    assert summary.quarantined == 0  # labels.csv and features.yaml are not images: skipped
    phi = set()
    uid_keys = set()
    for f in _files(archive):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        phi |= {str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber,
                ds.OtherPatientIDs, ds.InstitutionName, ds.SeriesInstanceUID,
                ds.StudyInstanceUID}
        uid_keys.add(pseudonym(ds.SeriesInstanceUID, secret=SECRET, kind="series"))
    text = "\n".join(p.read_text(errors="ignore") for p in Path(out).rglob("*.json"))
    leaked = [v for v in phi if v and v in text]
    assert not leaked
    got = {store.read_attrs(out, g)["medpipe"]["series_uid_key"] for g in groups}
    assert got == uid_keys


def test_demo_labelled_archive_comes_from_the_packaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh clone with no ../shared beside it: the demo's labelled part still builds."""
    from medpipe.sample import demo_medmnist_archive, packaged_medmnist

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MEDPIPE_SAMPLE_NPZ", raising=False)
    monkeypatch.delenv("MEDPIPE_SHARED_DATA", raising=False)
    packaged = packaged_medmnist("breastmnist")
    import medpipe

    assert packaged is not None and packaged.is_relative_to(Path(medpipe.__file__).parent)
    assert (packaged.parent / "LICENSE-breastmnist.txt").read_text().count("CC BY 4.0") >= 1

    labels, source = demo_medmnist_archive(tmp_path / "archive" / "medmnist", "breastmnist")
    assert source == packaged
    table = pd.read_csv(labels, dtype={"SeriesInstanceUID": str})
    assert table.groupby("split").size().to_dict() == {"train": 546, "val": 78}
    with np.load(packaged) as data:  # every image and label is the packaged one
        for f in _files(tmp_path / "archive" / "medmnist")[::97]:
            split, idx = f.stem.split("_")[1], int(f.stem.split("_")[2])
            ds = pydicom.dcmread(f)
            np.testing.assert_array_equal(ds.pixel_array, data[f"{split}_images"][idx])
            row = table.set_index("SeriesInstanceUID").loc[ds.SeriesInstanceUID]
            assert row["label"] == np.ravel(data[f"{split}_labels"])[idx]
    # built once: a rerun reads nothing
    assert demo_medmnist_archive(tmp_path / "archive" / "medmnist", "breastmnist") == (
        labels, None
    )


def test_demo_labelled_archive_from_an_explicit_file(tiny_npz: Path, tmp_path: Path) -> None:
    from medpipe.sample import demo_medmnist_archive, packaged_medmnist

    labels, source = demo_medmnist_archive(tmp_path / "m", "breastmnist", npz=tiny_npz)
    assert source == tiny_npz
    assert len(pd.read_csv(labels)) == 48 + 24
    assert packaged_medmnist("pneumoniamnist") is None  # not shipped: downloaded instead


def test_packaged_file_and_licence_ship_in_the_wheel() -> None:
    """pyproject's package-data globs cover the packaged MedMNIST file and its licence."""
    import tomllib

    import medpipe
    from medpipe.sample import packaged_medmnist

    root = Path(medpipe.__file__).parent
    pyproject = root.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("installed without the source tree")
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["medpipe"]
    shipped = {p for g in globs for p in root.glob(g)}
    npz = packaged_medmnist("breastmnist")
    assert npz in shipped and npz.parent / "LICENSE-breastmnist.txt" in shipped
