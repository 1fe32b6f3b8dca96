"""NIfTI file names: which files are masks, and the image a mask belongs to.

Masks are recognised by name: ``<prefix>_mask``, ``<prefix>_seg…`` or ``<prefix>…label…``
(``.nii`` / ``.nii.gz``) whose directory also holds ``<prefix>_image.nii[.gz]`` or
``<prefix>.nii[.gz]``.  Without such a sibling the file is read as an image of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["mask_image_of"]

_EXTS = (".nii.gz", ".nii")
_IMAGE_SUFFIXES = ("_image", "")
#: ``<prefix><sep>mask``, ``<prefix><sep>seg…``, ``<prefix>…label…`` (case-insensitive)
_MASK_RE = re.compile(
    r"^(?P<prefix>.+?)(?:[_\-.](?P<kind>mask|seg)|(?P<label>[_\-.]?labels?))", re.IGNORECASE
)


def _stem(name: str) -> str:
    low = name.lower()
    for ext in _EXTS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, name


def mask_image_of(root: Path, rel: str) -> str | None:
    """Relative path of the image a mask file belongs to, or ``None`` when it is no mask.

    Parameters
    ----------
    root
        Archive root.
    rel
        The file's relative path.

    Returns
    -------
    str or None
        ``<dir>/<prefix>_image.nii[.gz]`` or ``<dir>/<prefix>.nii[.gz]`` when the name
        marks a mask and that sibling exists; ``None`` otherwise.
    """
    parent, name = _split(rel)
    m = _MASK_RE.match(_stem(name))
    if not m:
        return None
    prefix = m.group("prefix")
    for suffix in _IMAGE_SUFFIXES:
        for ext in _EXTS:
            cand = f"{prefix}{suffix}{ext}"
            cand_rel = f"{parent}/{cand}" if parent else cand
            if cand_rel != rel and (Path(root) / cand_rel).is_file():
                return cand_rel
    return None


def _mask_name(rel: str) -> str:
    """ROI name of a mask file: the part of its name after the image prefix (``mask``…)."""
    stem = _stem(_split(rel)[1])
    m = _MASK_RE.match(stem)
    name = stem[m.end("prefix") :] if m else stem
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_-.") or "mask"
    return name
