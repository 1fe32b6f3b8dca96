"""Sample archives built from real images that pip-installed packages bundle (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["build_bundled_archive"]


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
