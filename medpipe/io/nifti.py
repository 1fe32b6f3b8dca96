"""NIfTI-1 / NIfTI-2 reader (``.nii``, ``.nii.gz``), with label maps as masks.

Geometry (see :mod:`medpipe.io.base`): nibabel's voxel axes ``(i, j, k)`` become the
array axes ``(x, y, z)``, so the data are transposed to ``(z, y, x) = (k, j, i)``.  The
affine (sform when set, else qform, as nibabel chooses) maps to RAS; LPS is
``diag(-1, -1, 1) @ affine``.  Spacing is the norm of each affine column, direction rows
are the normalised columns (``z`` from ``k``, ``y`` from ``j``, ``x`` from ``i``) and the
origin is the LPS position of voxel 0.  For a NIfTI made from DICOM this origin is the
first slice's ImagePositionPatient.

4D images are kept with axes ``("t", "z", "y", "x")`` (``header["t_step"]`` holds the
fourth pixdim and ``header["t_unit"]`` its unit); more dimensions are unsupported.

Masks are recognised by name: ``<prefix>_mask``, ``<prefix>_seg…`` or ``<prefix>…label…``
(``.nii`` / ``.nii.gz``) whose directory also holds ``<prefix>_image.nii[.gz]`` or
``<prefix>.nii[.gz]``.  Without such a sibling the file is read as an image of its own.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medpipe.errors import (
    InvalidSourceError,
    SeriesGeometryError,
    UnsupportedSourceError,
)
from medpipe.io.base import Probe, Series, check_declared_size
from medpipe.io.nifti_names import _mask_name, _stem, mask_image_of
from medpipe.io.registry import register_reader

__all__ = ["probe_nifti", "read_nifti", "mask_image_of", "nifti_geometry"]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
#: xyzt_units spatial code -> millimetres per unit (0 = unknown, taken as mm)
_SPACE_UNIT_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}
_TIME_UNITS = {0: None, 8: "s", 16: "ms", 24: "us", 32: "Hz", 40: "ppm", 48: "rad/s"}
_MODALITY_TOKENS = (
    ("PET", "PT"),
    ("PT", "PT"),
    ("CT", "CT"),
    ("MRI", "MR"),
    ("MR", "MR"),
    ("T1", "MR"),
    ("T2", "MR"),
    ("FLAIR", "MR"),
    ("DWI", "MR"),
    ("BOLD", "MR"),
)


def _load(path: Path, rel: str) -> nib.Nifti1Image | nib.Nifti2Image:
    try:
        img = nib.load(str(path))
    except FileNotFoundError as exc:
        raise InvalidSourceError("file not found", path=rel) from exc
    except Exception as exc:  # nibabel raises many types for bad headers
        raise InvalidSourceError(f"not a readable NIfTI file ({exc})", path=rel) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise UnsupportedSourceError(f"not NIfTI-1/2 ({type(img).__name__})", path=rel)
    return img


def _offset(img: nib.Nifti1Image) -> int:
    # nibabel's proxy knows the real offset (a header vox_offset of 0 means 352 + extensions)
    return int(getattr(img.dataobj, "offset", img.header["vox_offset"]))


def _expected_bytes(img: nib.Nifti1Image) -> int:
    n = int(np.prod(img.shape, dtype=np.int64)) * img.header.get_data_dtype().itemsize
    return _offset(img) + n


def _check_size(path: Path, img: nib.Nifti1Image, rel: str) -> None:
    """Detect truncation cheaply: file size (``.nii``) or the gzip ISIZE trailer."""
    need = _expected_bytes(img)
    shape = "×".join(str(int(n)) for n in img.shape)
    check_declared_size(need - _offset(img), rel, f"{shape} {img.header.get_data_dtype()}")
    size = path.stat().st_size
    if not path.name.lower().endswith(".gz"):
        if size < need:
            raise InvalidSourceError(f"truncated: {size} bytes, header needs {need}", path=rel)
        return
    with path.open("rb") as f:
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if len(tail) == 4 and struct.unpack("<I", tail)[0] == need % 2**32:
        return
    # multi-member gzip or a truncated stream: decompress to know for sure (rare path)
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidSourceError(f"corrupt or truncated gzip stream ({exc})", path=rel) from exc
    if total < need:
        raise InvalidSourceError(f"truncated: {total} bytes, header needs {need}", path=rel)


def _spatial_shape(img: nib.Nifti1Image) -> tuple[int, ...]:
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def probe_nifti(root: Path, rel: str) -> Probe:
    """Header-only look at a NIfTI file.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of a ``.nii`` / ``.nii.gz`` file.

    Returns
    -------
    Probe
        ``kind="nifti"``; masks get ``role="mask"`` and ``group`` = their image's path,
        images ``group`` = their own path.

    Raises
    ------
    InvalidSourceError
        Unreadable header or truncated file.
    UnsupportedSourceError
        More than 4 dimensions.
    """
    path = Path(root) / rel
    img = _load(path, rel)
    _check_size(path, img, rel)
    shape = _spatial_shape(img)
    if len(shape) > 4:
        raise UnsupportedSourceError(f"{len(shape)}D NIfTI (at most 4D is ingested)", path=rel)
    image = mask_image_of(Path(root), rel)
    detail: dict[str, Any] = {
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "shape": list(shape),
        "dtype": str(img.header.get_data_dtype().newbyteorder("=")),
    }
    if image is not None:
        return Probe(path=rel, kind="nifti", group=image, role="mask", detail=detail)
    return Probe(path=rel, kind="nifti", group=rel, role="image", detail=detail)


def nifti_geometry(
    affine: np.ndarray, *, unit_mm: float = 1.0
) -> tuple[tuple[float, ...], tuple[float, float, float], tuple[tuple[float, float, float], ...]]:
    """Spacing (zyx), LPS origin and direction (rows z, y, x) from a NIfTI RAS affine.

    Parameters
    ----------
    affine
        4×4 voxel ``(i, j, k)`` → RAS affine.
    unit_mm
        Millimetres per affine unit (from ``xyzt_units``).

    Returns
    -------
    spacing, origin, direction
    """
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=float)[:3] * unit_mm
    cols = lps[:, :3]
    norms = np.linalg.norm(cols, axis=0)
    if not np.all(norms > 0) or not np.all(np.isfinite(cols)):
        raise SeriesGeometryError("degenerate affine (zero or non-finite voxel size)")
    unit = cols / norms
    # array axes (z, y, x) are nibabel's (k, j, i)
    spacing = (float(norms[2]), float(norms[1]), float(norms[0]))
    direction = tuple(tuple(float(v) for v in unit[:, c]) for c in (2, 1, 0))
    origin = tuple(float(v) for v in lps[:, 3])
    return spacing, origin, direction  # type: ignore[return-value]


def _to_zyx(arr: np.ndarray) -> np.ndarray:
    """nibabel ``(i, j, k[, t])`` → ``([t,] z, y, x)``, native byte order, contiguous."""
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    while arr.ndim < 3:
        arr = arr[..., np.newaxis]
    out = np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim - 1, -1, -1))))
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return out


def _guess_modality(rel: str) -> str | None:
    tokens = {t.upper() for t in re.split(r"[^A-Za-z0-9]+", _stem(rel)) if t}
    for token, modality in _MODALITY_TOKENS:
        if token in tokens:
            return modality
    return None


def _unit_mm(hdr: Any) -> float:
    return _SPACE_UNIT_MM.get(int(hdr["xyzt_units"]) & 0x07, 1.0)


def read_nifti(root: Path, rels: Sequence[str]) -> Series:
    """Read one NIfTI image and the masks that belong to it.

    Parameters
    ----------
    root
        Archive root.
    rels
        The image's relative path and those of its masks (recognised by name, see the
        module docstring); exactly one image.

    Returns
    -------
    Series
        ``uid`` = the image's relative path; data in ``(z, y, x)`` (or ``(t, z, y, x)``),
        on-disk dtype when the header's scaling is the identity, else float32 with
        ``rescale = {"slope", "intercept", "applied": True}``; masks in ``labels`` as uint8.

    Raises
    ------
    InvalidSourceError
        Unreadable or truncated file, or not exactly one image in ``rels``.
    SeriesGeometryError
        A mask's grid differs from the image's.
    UnsupportedSourceError
        More than 4 dimensions.
    """
    root = Path(root)
    rels = list(rels)
    mask_rels = [
        r for r in rels if (img_rel := mask_image_of(root, r)) is not None and img_rel in rels
    ]
    image_rels = [r for r in rels if r not in mask_rels]
    if len(image_rels) != 1:
        raise InvalidSourceError(
            f"expected exactly one NIfTI image, got {len(image_rels)}",
            path=image_rels[0] if image_rels else (rels[0] if rels else None),
        )
    rel = image_rels[0]
    path = root / rel
    img = _load(path, rel)
    _check_size(path, img, rel)
    hdr = img.header
    shape = _spatial_shape(img)
    if len(shape) > 4:
        raise UnsupportedSourceError(f"{len(shape)}D NIfTI (at most 4D is ingested)", path=rel)
    spacing, origin, direction = _geometry(img, rel)

    # nibabel moves the header's scl_slope/scl_inter onto the array proxy when loading
    slope = getattr(img.dataobj, "slope", None)
    inter = getattr(img.dataobj, "inter", None)
    identity = slope in (None, 1.0) and inter in (None, 0.0)
    try:
        raw = np.asanyarray(img.dataobj) if identity else None
        if identity:
            data = _to_zyx(np.asarray(raw))
            rescale: dict[str, Any] = {}
        else:
            data = _to_zyx(img.get_fdata(dtype=np.float32))
            rescale = {
                "slope": float(slope if slope is not None else 1.0),
                "intercept": float(inter if inter is not None else 0.0),
                "applied": True,
            }
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InvalidSourceError(f"cannot read voxel data ({exc})", path=rel) from exc

    axes = ("t", "z", "y", "x") if data.ndim == 4 else ("z", "y", "x")
    header: dict[str, Any] = {
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "disk_dtype": str(hdr.get_data_dtype().newbyteorder("=")),
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
    }
    if data.ndim == 4:
        header["t_step"] = float(hdr["pixdim"][4])
        header["t_unit"] = _TIME_UNITS.get(int(hdr["xyzt_units"]) & 0x38)
    modality = _guess_modality(rel)
    header["modality_source"] = "filename" if modality else "unknown"

    labels: dict[str, np.ndarray] = {}
    spatial = data.shape[-3:]
    for mrel in sorted(mask_rels):
        labels[_unique(_mask_name(mrel), labels)] = _read_mask(
            root, mrel, spatial, img.affine, _unit_mm(hdr)
        )
    return Series(
        uid=rel,
        sources=[rel, *sorted(mask_rels)],
        data=data,
        modality=modality or "NIFTI",
        spacing=spacing,
        origin=origin,
        direction=direction,
        axes=axes,
        rescale=rescale,
        header=header,
        labels=labels,
    )


def _unique(name: str, taken: dict[str, Any]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def _geometry(img: nib.Nifti1Image, rel: str) -> tuple:
    try:
        return nifti_geometry(img.affine, unit_mm=_unit_mm(img.header))
    except SeriesGeometryError as exc:
        raise SeriesGeometryError(exc.reason, path=rel) from exc


def _read_mask(
    root: Path, rel: str, spatial: tuple[int, ...], affine: np.ndarray, unit_mm: float
) -> np.ndarray:
    path = root / rel
    img = _load(path, rel)
    _check_size(path, img, rel)
    mask_lps = _RAS_TO_LPS @ np.asarray(img.affine)[:3] * _unit_mm(img.header)
    image_lps = _RAS_TO_LPS @ np.asarray(affine)[:3] * unit_mm
    try:
        data = _to_zyx(np.asanyarray(img.dataobj))
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InvalidSourceError(f"cannot read voxel data ({exc})", path=rel) from exc
    if data.shape != tuple(spatial):
        raise SeriesGeometryError(
            f"mask shape {data.shape} (zyx) differs from the image's {tuple(spatial)}", path=rel
        )
    if not np.allclose(mask_lps, image_lps, atol=1e-3, rtol=1e-4):
        raise SeriesGeometryError("mask affine differs from the image's", path=rel)
    if not np.all(np.isfinite(data)):
        raise InvalidSourceError("mask holds non-finite values", path=rel)
    values = np.rint(data) if data.dtype.kind == "f" else data
    if values.size and (values.min() < 0 or values.max() > 255):
        raise InvalidSourceError("mask values outside 0..255", path=rel)
    return values.astype(np.uint8)


class NiftiReader:
    """NIfTI-1/2 images, with their label maps as masks."""

    name = "nifti"
    suffixes: tuple[str, ...] = (".nii", ".nii.gz")
    series_per_image = False

    def probe(self, root: Path, rel: str) -> Probe:
        """See :func:`probe_nifti`."""
        return probe_nifti(root, rel)

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        """See :func:`read_nifti`."""
        return [read_nifti(root, [*images, *masks])]


register_reader(NiftiReader())
