"""Streaming a large DICOM series: headers first, then the pixels slab by slab.

A series whose files hold more than :data:`STREAM_MIN_BYTES` is not decoded at once.
Its headers are read without pixel data (one dataset kept, plus PET headers for the SUV
factor), the planes are ordered as usual, and :attr:`Series.data` becomes a lazy dask
array with one block per z-chunk of the store's chunk layout
(:func:`~medpipe.store.pyramid.default_chunks`): each block reads and decodes only the
files of its planes and applies the modality rescale to them.  Writing it with
:func:`~medpipe.store.images.write_image` then holds a few slabs, not the series.

Only series of single-frame grey files, each SOP instance once, stream; anything else
(multi-frame objects, colour, duplicate copies needing decoding fall-backs) takes the
in-memory path of :mod:`medpipe.io.dicom.series`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from pydicom.dataset import FileDataset

from medpipe.errors import InvalidSourceError, SeriesGeometryError
from medpipe.io.coding import ModalityRescale
from medpipe.io.dicom.frames import _decode, _Frame, _frames_of
from medpipe.io.dicom.part10 import _dcmread, _open_part10, _quiet
from medpipe.io.dicom.values import _check_size, _declared_bytes, _get, _image_size
from medpipe.store.pyramid import default_chunks

__all__ = [
    "STREAM_MIN_BYTES",
    "files_bytes",
    "load_headers",
    "lazy_planes",
    "read_slab",
    "stored_dtype",
]

#: Series whose files hold more bytes than this together are read slab by slab.
STREAM_MIN_BYTES = 16 << 20

_GREY = ("MONOCHROME1", "MONOCHROME2")


def files_bytes(root: Path, rels: Sequence[str]) -> int:
    """Total size on disk of the series' files (missing files count 0)."""
    total = 0
    for rel in rels:
        try:
            total += os.stat(root / rel).st_size
        except OSError:
            pass
    return total


@dataclass
class Headers:
    """The pixel-less headers of a streamable series."""

    rels: list[str] = field(default_factory=list)
    frames: list[_Frame] = field(default_factory=list)
    first: FileDataset | None = None
    #: Every header for PET (the SUV factor reads them all), else only the first.
    datasets: list[FileDataset] = field(default_factory=list)
    monochrome1: bool = False
    rows: int = 0
    cols: int = 0


def load_headers(root: Path, rels: Sequence[str], max_bytes: int) -> Headers | None:
    """Read every file's header without its pixel data.

    Returns
    -------
    Headers or None
        ``None`` when the series does not stream (a multi-frame or colour object, or a
        SOP instance stored twice): the caller reads it in memory instead.

    Raises
    ------
    InvalidSourceError, SeriesGeometryError, SourceTooLargeError
        As :func:`~medpipe.io.dicom.series.read_dicom_series`.
    """
    out = Headers()
    seen: set[str] = set()
    total = 0
    pet = False
    with _quiet():
        for rel in rels:
            with _open_part10(root / rel, rel) as fp:
                ds = _dcmread(fp, rel, stop_before_pixels=True)
            sop = str(_get(ds, "SOPInstanceUID", rel, "") or "")
            if sop and sop in seen:
                return None
            seen.add(sop)
            rows, cols, nframes, samples, bits = size = _image_size(ds, rel)
            photometric = str(_get(ds, "PhotometricInterpretation", rel, "") or "")
            if nframes != 1 or samples != 1 or photometric not in _GREY:
                return None
            total += _declared_bytes(size)
            _check_size((total, 1, 1, 1, 8), rel, max_bytes)
            if out.first is None:
                out.first, out.rows, out.cols = ds, rows, cols
                pet = str(_get(ds, "Modality", rel, "") or "") == "PT"
            elif (rows, cols) != (out.rows, out.cols):
                raise SeriesGeometryError(
                    f"image size {rows}x{cols} differs from {out.rows}x{out.cols} "
                    "in the same series",
                    path=rel,
                )
            out.monochrome1 |= photometric == "MONOCHROME1"
            out.frames.extend(_frames_of(ds, len(out.rels), 1, rel))
            out.rels.append(rel)
            if pet or not out.datasets:
                out.datasets.append(ds)
    return out


def read_slab(
    root: str, rels: Sequence[str], rows: int, cols: int, dtype: str, coder: ModalityRescale
) -> np.ndarray:
    """Decode the single-frame files ``rels`` (in plane order) and rescale them.

    Parameters
    ----------
    root
        Archive root.
    rels
        One file per plane, in the series' plane order.
    rows, cols, dtype
        The series' plane shape and stored dtype (every file must match them).
    coder
        The rescale of these planes (one slope/intercept per plane, or one for all).

    Returns
    -------
    numpy.ndarray
        ``(len(rels), rows, cols)``, the coder's decoded dtype.

    Raises
    ------
    InvalidSourceError
        A file cannot be decoded or its pixels differ in shape or dtype from the series.
    """
    stored = np.empty((len(rels), rows, cols), dtype=np.dtype(dtype))
    with _quiet():
        for i, rel in enumerate(rels):
            with _open_part10(Path(root) / rel, rel) as fp:
                ds = _dcmread(fp, rel, stop_before_pixels=False)
            arr = _decode(ds, rel)
            if arr.shape != (1, rows, cols, 1) or arr.dtype != stored.dtype:
                raise InvalidSourceError(
                    f"pixels {arr.shape[1:3]} {arr.dtype} differ from the series' "
                    f"({rows}, {cols}) {stored.dtype}",
                    path=rel,
                )
            stored[i] = arr[0, :, :, 0]
            del ds, arr
    return coder.decode(stored)


def stored_dtype(root: Path, rel: str) -> np.dtype:
    """The stored dtype of one single-frame file's decoded pixels."""
    with _quiet(), _open_part10(root / rel, rel) as fp:
        ds = _dcmread(fp, rel, stop_before_pixels=False)
    return _decode(ds, rel).dtype


def _planes_of(values: Sequence[float], z0: int, z1: int) -> list[float]:
    return list(values) if len(values) == 1 else list(values[z0:z1])


def lazy_planes(
    root: Path, headers: Headers, order: Sequence[int], coder: ModalityRescale
) -> da.Array:
    """The series' ``(z, y, x)`` voxels as a dask array of one block per store z-chunk.

    Parameters
    ----------
    root
        Archive root.
    headers
        From :func:`load_headers`.
    order
        Plane order (indices into ``headers.frames``).
    coder
        The series' rescale, one slope/intercept per ordered plane (or one for all).

    Returns
    -------
    dask.array.Array
        Blocks of :func:`read_slab`, z-chunked as the store chunks the series.
    """
    paths = [headers.rels[headers.frames[k].file] for k in order]
    out_dtype = coder.decoded_dtype
    shape = (len(paths), headers.rows, headers.cols)
    zc = default_chunks(shape, ("z", "y", "x"), itemsize=out_dtype.itemsize)[0]
    blocks = []
    for z0 in range(0, shape[0], zc):
        z1 = min(shape[0], z0 + zc)
        sub = dataclasses.replace(
            coder,
            slope=_planes_of(coder.slope, z0, z1),
            intercept=_planes_of(coder.intercept, z0, z1),
        )
        slab = dask.delayed(read_slab, pure=True)(
            str(root), paths[z0:z1], headers.rows, headers.cols, coder.stored_dtype, sub
        )
        blocks.append(da.from_delayed(slab, shape=(z1 - z0, *shape[1:]), dtype=out_dtype))
    return da.concatenate(blocks, axis=0)
