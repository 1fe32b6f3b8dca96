"""Sample archives built from real images that pip-installed packages bundle (no download)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MEDMNIST_FEATURE_FAMILIES",
    "build_bundled_archive",
    "build_medmnist_archive",
    "download_medmnist",
    "PACKAGED_MEDMNIST",
    "packaged_medmnist",
    "demo_medmnist_archive",
]


def _pydicom_test_files() -> Path:
    import pydicom.data

    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent


def _nibabel_data() -> Path:
    from nibabel.testing import data_path

    return Path(data_path)


#: nibabel's real (downsampled) MRI files copied into the sample archive.
NIBABEL_FILES = ("anatomical.nii", "example_nifti2.nii.gz", "example4d.nii.gz")


def build_bundled_archive(out: str | Path) -> Path:
    """Build the demo archive from pydicom's and nibabel's bundled real test images.

    The archive holds pydicom 3's test files as they ship (real CT, MR, US, RT and
    secondary-capture objects in many transfer syntaxes, a DICOMDIR tree, and the
    deliberately broken files that ingest must quarantine) under ``dicom/``, and
    nibabel's real MRI volumes (NIfTI-1 and NIfTI-2) under ``nifti/``.

    Parameters
    ----------
    out
        Folder to create (existing files with the same names are left as they are,
        so rebuilding does not change mtimes and a rerun stays incremental).

    Returns
    -------
    pathlib.Path
        The archive root.
    """
    out = Path(out)
    dicom = out / "dicom"
    shutil.copytree(
        _pydicom_test_files(),
        dicom,
        dirs_exist_ok=True,
        copy_function=_copy_if_missing,
        ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.dump", "*.json"),
    )
    nifti = out / "nifti"
    nifti.mkdir(parents=True, exist_ok=True)
    for name in NIBABEL_FILES:
        _copy_if_missing(str(_nibabel_data() / name), str(nifti / name))
    return out


def _copy_if_missing(src: str, dst: str) -> str:
    if not Path(dst).exists():
        shutil.copy2(src, dst)
    return dst


# --------------------------------------------------------------------------- MedMNIST

#: Feature families for MedMNIST's 28x28 grey images, written to the archive's
#: ``features.yaml``: the radiomics families plus the raw pixels, HOG and LBP texture that
#: carry most of the signal at this size (BreastMNIST, patient-grouped CV AUC of the
#: logistic regression: about 0.84 with these, 0.80 with the default families).
MEDMNIST_FEATURE_FAMILIES: tuple[str, ...] = (
    "firstorder", "histogram", "glcm", "glrlm", "morphology", "regionprops", "texture",
    "pixels", "hog",
)

#: MedMNIST sets that :func:`build_medmnist_archive` knows, with the modality and body
#: part written into the DICOM headers.
MEDMNIST_SETS: dict[str, tuple[str, str]] = {
    "breastmnist": ("US", "BREAST"),
    "pneumoniamnist": ("CR", "CHEST"),
}

_FIRST = (
    "JANE", "JOHN", "MARIA", "AHMED", "LI", "SOFIA", "OLIVER", "AMARA", "LUCAS", "EMMA",
    "NOAH", "FATIMA", "HIRO", "ANNA", "DAVID", "CHLOE", "MATEO", "ZOE", "IVAN", "LEILA",
)
_LAST = (
    "DOE", "SMITH", "GARCIA", "MULLER", "NGUYEN", "ROSSI", "KOWALSKI", "OKAFOR", "TANAKA",
    "DUBOIS", "JOHANSSON", "SILVA", "BROWN", "KHAN", "MARTIN", "PETROV", "COHEN", "LOPEZ",
)
_INSTITUTIONS = ("ST ELSEWHERE GENERAL HOSPITAL", "MERCY CHILDREN'S CLINIC", "NORTHSIDE IMAGING")

#: The SOP class of every file :func:`build_medmnist_archive` writes.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    # deterministic: rebuilding the same archive gives the same UIDs (and store keys)
    return str(generate_uid(entropy_srcs=["medpipe-medmnist", *map(str, parts)]))


def _sc_dataset(
    pixels: np.ndarray, *, patient: dict[str, str], uids: dict[str, str], modality: str,
    body_part: str, number: int,
) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = uids["sop"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = uids["sop"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    for key, value in patient.items():
        setattr(ds, key, value)
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.ConversionType = "WSD"
    ds.StudyID = str(number)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def _fake_patient(rng: np.random.Generator, index: int) -> dict[str, str]:
    """Realistic but invented identifying headers (what de-identification must strip)."""
    first, middle = rng.choice(_FIRST, 2)
    year = int(rng.integers(1940, 2020))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    study_day = f"20{int(rng.integers(10, 24)):02d}{month:02d}{day:02d}"
    return {
        "PatientName": f"{rng.choice(_LAST)}^{first}^{middle[0]}",
        "PatientID": f"MRN{int(rng.integers(10**7, 10**8))}{index:05d}",
        "PatientBirthDate": f"{year}{month:02d}{day:02d}",
        "PatientSex": str(rng.choice(["F", "M"])),
        "OtherPatientIDs": f"NHS{int(rng.integers(10**9, 10**10))}",
        "PatientAddress": f"{int(rng.integers(1, 400))} {rng.choice(_LAST)} STREET",
        "AccessionNumber": f"ACC{int(rng.integers(10**8, 10**9))}",
        "InstitutionName": str(rng.choice(_INSTITUTIONS)),
        "ReferringPhysicianName": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}",
        "StudyDate": study_day,
        "StudyTime": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
    }


def download_medmnist(name: str, *, root: str | Path) -> Path:
    """Download the official MedMNIST ``<name>.npz`` (train/val/test) with ``medmnist``.

    Raises
    ------
    ConfigError
        ``medmnist`` is not installed (it is optional: it pulls in PyTorch).
    """
    from medpipe.errors import ConfigError

    try:
        import medmnist  # noqa: PLC0415 - optional dependency
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "downloading MedMNIST needs the optional 'medmnist' package "
            "(pip install medmnist); or pass --npz with a local file"
        ) from None
    root = Path(root)  # pragma: no cover - needs the network
    root.mkdir(parents=True, exist_ok=True)  # pragma: no cover
    cls = getattr(medmnist, medmnist.INFO[name]["python_class"])  # pragma: no cover
    cls(split="train", download=True, root=str(root))  # pragma: no cover
    return root / f"{name}.npz"  # pragma: no cover


def build_medmnist_archive(
    npz: str | Path,
    out: str | Path,
    *,
    name: str,
    splits: Sequence[str] | None = None,
    images_per_patient: int = 1,
    limit: int | None = None,
    seed: int = 0,
) -> Path:
    """Turn a MedMNIST npz into a DICOM archive as a hospital export looks like.

    One secondary-capture DICOM file per image, with invented but realistic patient
    headers (name, ID, birth date, address, accession number, institution), its own
    study and series, and a ``labels.csv`` keyed by SeriesInstanceUID with the columns
    ``SeriesInstanceUID``, ``label`` and ``split``.  Beside them, ``features.yaml`` is a
    feature config suited to these images (:data:`MEDMNIST_FEATURE_FAMILIES`), for
    ``medpipe features STORE --config ARCHIVE/features.yaml``.

    Parameters
    ----------
    npz
        MedMNIST file holding any of ``train``/``val``/``test`` (``<split>_images``,
        ``<split>_labels``).
    out
        Archive folder to create; files are written under ``dicom/<split>/``.
    name
        ``breastmnist`` or ``pneumoniamnist`` (sets modality and body part; other
        MedMNIST 2D names are accepted with modality ``OT``).
    splits
        Only these splits (default: all in the file).
    images_per_patient
        MedMNIST has no patient identity, so the default is one patient (and study) per
        image.  Values > 1 give consecutive images of a split the same patient; this is
        for testing patient-grouped cross-validation, not for real MedMNIST data.
    limit
        At most this many images per split (dev runs).
    seed
        Seed of the invented headers.  UIDs derive from ``name``, split and index, so a
        rebuild gives identical UIDs.

    Returns
    -------
    pathlib.Path
        The archive root.
    """
    import pandas as pd

    from medpipe.errors import ConfigError

    if images_per_patient < 1:
        raise ConfigError("images_per_patient must be >= 1")
    modality, body_part = MEDMNIST_SETS.get(name, ("OT", ""))
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows = []
    with np.load(npz, allow_pickle=False) as data:
        present = [s for s in ("train", "val", "test") if f"{s}_images" in data.files]
        wanted = present if splits is None else [s for s in present if s in set(splits)]
        if not wanted:
            raise ConfigError(f"{npz}: no split of {list(splits or present)} in {data.files}")
        for split in wanted:
            images = data[f"{split}_images"]
            labels = np.asarray(data[f"{split}_labels"]).reshape(len(images), -1)
            if images.ndim != 3 or labels.shape[1] != 1:
                raise ConfigError(
                    f"{npz}: {split} must be 2D grey images with one label each "
                    f"(images {images.shape}, labels {labels.shape})"
                )
            n = len(images) if limit is None else min(limit, len(images))
            folder = out / "dicom" / split
            folder.mkdir(parents=True, exist_ok=True)
            patient: dict[str, str] = {}
            for i in range(n):
                p = i // images_per_patient
                if i % images_per_patient == 0:
                    patient = _fake_patient(rng, p)
                    study = _uid(name, split, p, "study")
                uids = {
                    "study": study,
                    "series": _uid(name, split, i, "series"),
                    "sop": _uid(name, split, i, "sop"),
                }
                ds = _sc_dataset(
                    images[i], patient=patient, uids=uids, modality=modality,
                    body_part=body_part, number=p,
                )
                path = folder / f"{name}_{split}_{i:05d}.dcm"
                if not path.exists():  # a rebuild keeps mtimes: re-ingest stays incremental
                    ds.save_as(path, enforce_file_format=True)
                rows.append(
                    {"SeriesInstanceUID": uids["series"], "label": int(labels[i, 0]),
                     "split": split}
                )
    pd.DataFrame(rows).to_csv(out / "labels.csv", index=False)
    families = "".join(f"  - {f}\n" for f in MEDMNIST_FEATURE_FAMILIES)
    (out / "features.yaml").write_text(
        "# medpipe feature config for MedMNIST's 28x28 grey images:\n"
        "#   medpipe features STORE --config features.yaml\n"
        f"families:\n{families}"
    )
    return out


#: MedMNIST files shipped inside the package (``medpipe/data/``, CC BY 4.0; see
#: ``medpipe/data/LICENSE-breastmnist.txt`` for the licence and the citations).
PACKAGED_MEDMNIST: dict[str, str] = {"breastmnist": "breastmnist_trainval.npz"}


def packaged_medmnist(name: str) -> Path | None:
    """The packaged train+val file of a MedMNIST set, or ``None`` when none is shipped.

    Parameters
    ----------
    name
        The set, e.g. ``breastmnist`` (the only one shipped: 546 train and 78 val
        images, about 0.45 MB; the test split is not shipped).

    Returns
    -------
    pathlib.Path or None
    """
    from importlib.resources import files

    fname = PACKAGED_MEDMNIST.get(name)
    if fname is None:
        return None
    path = Path(str(files("medpipe") / "data" / fname))
    return path if path.is_file() else None


def demo_medmnist_archive(
    folder: str | Path, name: str = "breastmnist", *, npz: str | Path | None = None
) -> tuple[Path, Path | None]:
    """The demo's labelled MedMNIST archive, built once.

    The images come from ``npz`` when given (``$MEDPIPE_SAMPLE_NPZ`` in the CLI), else
    from the file packaged with medpipe (:func:`packaged_medmnist`), else from the
    official download (:func:`download_medmnist`, needs the optional ``medmnist``).
    Nothing outside the package and ``folder`` is looked at.

    Parameters
    ----------
    folder
        The archive folder (``labels.csv`` in it means it is built already).
    name
        The MedMNIST set.
    npz
        A local MedMNIST file to use instead.

    Returns
    -------
    tuple of (pathlib.Path, pathlib.Path or None)
        ``labels.csv`` of the archive, and the ``.npz`` it was built from (``None``
        when the archive existed already).

    Raises
    ------
    ConfigError
        No file is packaged for ``name`` and it cannot be downloaded.
    """
    folder = Path(folder)
    labels = folder / "labels.csv"
    if labels.exists():
        return labels, None
    source = Path(npz) if npz else packaged_medmnist(name)
    if source is None:
        source = download_medmnist(name, root=folder.parent / ".medmnist")
    build_medmnist_archive(source, folder, name=name)
    return labels, source
