"""MedMNIST-style ``.npz`` reader: ``<split>_images`` and ``<split>_labels`` arrays.

Splits are ``train``, ``val`` and ``test`` (any present).  Images are ``(N, H, W)`` grey,
``(N, H, W, 3)`` colour or ``(N, D, H, W)`` volumes (MedMNIST 3D); labels are ``(N,)`` or
``(N, 1)`` class indices, or ``(N, K)`` multi-label 0/1 rows.  Every image becomes one
:class:`Series` with ``uid = f"{rel}#{split}/{index}"``, modality ``"OT"`` and unit
spacing (``header["spacing_source"] = "default"``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medpipe.errors import InvalidSourceError
from medpipe.io.base import Probe, Series
from medpipe.io.registry import register_reader

__all__ = ["probe_npz", "read_npz", "npz_labels", "SPLITS"]

SPLITS = ("train", "val", "test")


def _open(root: Path, rel: str) -> Any:
    path = Path(root) / rel
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InvalidSourceError("file not found", path=rel) from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidSourceError(f"not a readable npz ({exc})", path=rel) from exc


def _splits(files: Sequence[str], rel: str) -> list[str]:
    splits = [s for s in SPLITS if f"{s}_images" in files]
    if not splits:
        raise InvalidSourceError("no <split>_images array (not a MedMNIST-style npz)", path=rel)
    for s in splits:
        if f"{s}_labels" not in files:
            raise InvalidSourceError(f"{s}_images without {s}_labels", path=rel)
    return splits


def _header_shape(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    with zf.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), dtype


def probe_npz(root: Path, rel: str) -> Probe:
    """Look at an npz's array headers (no pixel data is decoded).

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the ``.npz``.

    Returns
    -------
    Probe
        ``kind="npz"``, ``group`` = ``rel``; ``detail`` holds the image count per split
        and the image shape.

    Raises
    ------
    InvalidSourceError
        Not a zip of ``.npy`` arrays, or no matching ``<split>_images``/``_labels``.
    """
    path = Path(root) / rel
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            splits = _splits(names, rel)
            counts, shape = {}, None
            for s in splits:
                ishape, dtype = _header_shape(zf, f"{s}_images")
                lshape, _ = _header_shape(zf, f"{s}_labels")
                if len(ishape) not in (3, 4) or not lshape or lshape[0] != ishape[0]:
                    raise InvalidSourceError(
                        f"{s}: images {ishape} and labels {lshape} do not match", path=rel
                    )
                counts[s] = int(ishape[0])
                shape = list(ishape[1:])
    except InvalidSourceError:
        raise
    except FileNotFoundError as exc:
        raise InvalidSourceError("file not found", path=rel) from exc
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise InvalidSourceError(f"not a readable npz ({exc})", path=rel) from exc
    return Probe(
        path=rel,
        kind="npz",
        group=rel,
        detail={"counts": counts, "image_shape": shape, "dtype": str(dtype)},
    )


def _load_split(npz: Any, split: str, rel: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images = np.asarray(npz[f"{split}_images"])
        labels = np.asarray(npz[f"{split}_labels"])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise InvalidSourceError(f"cannot read {split} arrays ({exc})", path=rel) from exc
    if images.ndim not in (3, 4) or labels.shape[:1] != images.shape[:1]:
        raise InvalidSourceError(
            f"{split}: images {images.shape} and labels {labels.shape} do not match", path=rel
        )
    if labels.ndim == 1:
        labels = labels[:, np.newaxis]
    if labels.ndim != 2 or labels.dtype.kind not in "biuf":
        raise InvalidSourceError(f"{split}: labels of shape {labels.shape}", path=rel)
    if images.dtype.kind not in "biuf":
        raise InvalidSourceError(f"{split}: images of dtype {images.dtype}", path=rel)
    return images, labels


def _image_axes(images: np.ndarray) -> tuple[str, ...]:
    if images.ndim == 3:
        return ("z", "y", "x")
    return ("c", "y", "x") if images.shape[-1] in (3, 4) else ("z", "y", "x")


def _label_header(row: np.ndarray) -> dict[str, Any]:
    if row.size == 1:
        return {"label": int(row[0])}
    return {"labels": [int(v) for v in row]}


def read_npz(root: Path, rels: Sequence[str]) -> list[Series]:
    """Every image of every split of MedMNIST-style npz files.

    Parameters
    ----------
    root
        Archive root.
    rels
        Relative paths of ``.npz`` files.

    Returns
    -------
    list of Series
        One per image, ``uid = f"{rel}#{split}/{index}"``; data ``(1, H, W)`` grey,
        ``(3, H, W)`` colour (axes ``c, y, x``) or ``(D, H, W)`` volumes; ``header`` has
        ``split``, ``index`` and ``label`` (or ``labels`` for multi-label rows).

    Raises
    ------
    InvalidSourceError
        Not a valid MedMNIST-style npz.
    """
    out: list[Series] = []
    for rel in rels:
        with _open(root, rel) as npz:
            for split in _splits(list(npz.files), rel):
                images, labels = _load_split(npz, split, rel)
                axes = _image_axes(images)
                for i in range(images.shape[0]):
                    img = images[i]
                    if axes[0] == "c":
                        img = np.moveaxis(img[..., :3], -1, 0)
                    elif img.ndim == 2:
                        img = img[np.newaxis]
                    spatial = 2 if axes[0] == "c" else 3
                    out.append(
                        Series(
                            uid=f"{rel}#{split}/{i}",
                            sources=[rel],
                            data=np.ascontiguousarray(img),
                            modality="OT",
                            spacing=(1.0,) * spatial,
                            axes=axes,
                            header={
                                "split": split,
                                "index": i,
                                "spacing_source": "default",
                                **_label_header(labels[i]),
                            },
                        )
                    )
    return out


def npz_labels(root: Path, rel: str) -> pd.DataFrame:
    """The labels of a MedMNIST-style npz as a table, without reading the images.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the ``.npz``.

    Returns
    -------
    pandas.DataFrame
        Columns ``uid`` (as in :func:`read_npz`), ``split`` and ``label`` (int; for
        multi-label files one ``label_<k>`` column per class instead).

    Raises
    ------
    InvalidSourceError
        Not a valid MedMNIST-style npz.
    """
    frames = []
    with _open(root, rel) as npz:
        for split in _splits(list(npz.files), rel):
            try:
                labels = np.asarray(npz[f"{split}_labels"])
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise InvalidSourceError(f"cannot read {split}_labels ({exc})", path=rel) from exc
            if labels.ndim == 1:
                labels = labels[:, np.newaxis]
            n = labels.shape[0]
            frame = pd.DataFrame({"uid": [f"{rel}#{split}/{i}" for i in range(n)], "split": split})
            if labels.shape[1] == 1:
                frame["label"] = labels[:, 0].astype(np.int64)
            else:
                for k in range(labels.shape[1]):
                    frame[f"label_{k}"] = labels[:, k].astype(np.int64)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


class NpzReader:
    """MedMNIST-style ``.npz`` files: every image of every split becomes a series."""

    name = "npz"
    suffixes: tuple[str, ...] = (".npz",)
    series_per_image = True

    def probe(self, root: Path, rel: str) -> Probe:
        """See :func:`probe_npz`."""
        return probe_npz(root, rel)

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        """Every image of each file (masks are not read)."""
        return [s for r in images for s in read_npz(root, [r])]


register_reader(NpzReader())
