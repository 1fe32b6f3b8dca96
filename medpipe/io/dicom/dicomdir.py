"""DICOMDIR: the files a directory index references."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from medpipe.errors import InvalidSourceError
from medpipe.io.dicom.part10 import _dcmread, _is_part10


def _dicomdir_files(ds: Dataset) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for rec in ds.get("DirectoryRecordSequence", []) or []:
        fid = rec.get("ReferencedFileID")
        if fid:
            parts = (fid,) if isinstance(fid, str) else tuple(str(p) for p in fid)
            out.append(parts)
    return out


def read_dicomdir(root: Path, rel: str) -> list[str]:
    """Relative paths (to ``root``) of the files a DICOMDIR references.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the DICOMDIR.

    Returns
    -------
    list of str
        POSIX paths relative to ``root``, in record order, without duplicates.

    Raises
    ------
    InvalidSourceError
        The file is not a DICOMDIR, is unreadable, or references no files.
    """
    path = Path(root) / rel
    _is_part10(path, rel)
    ds = _dcmread(path, rel, stop_before_pixels=False)
    if "DirectoryRecordSequence" not in ds:
        raise InvalidSourceError("not a DICOMDIR (no Directory Record Sequence)", path=rel)
    files = _dicomdir_files(ds)
    if not files:
        raise InvalidSourceError("empty DICOMDIR (references no files)", path=rel)
    base = Path(rel).parent
    out: list[str] = []
    for parts in files:
        p = (base.joinpath(*parts)).as_posix()
        if p not in out:
            out.append(p)
    return out
