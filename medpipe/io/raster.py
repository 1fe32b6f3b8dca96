"""Raster reader: TIFF (tifffile) and PNG / JPEG (Pillow).

Axes (see :mod:`medpipe.io.base`):

* grey 2D → ``("z", "y", "x")`` with one plane; multi-page / Z-stack TIFF → pages on ``z``;
* colour (RGB, palette) → ``("c", "y", "x")``, or ``("c", "z", "y", "x")`` for a colour
  stack; an alpha channel is dropped.

Spacing (mm) comes from the TIFF resolution tags (``ResolutionUnit`` inch or centimetre,
or the ImageJ ``unit``/``spacing`` metadata), OME-TIFF ``PhysicalSize*`` or the PNG
``pHYs`` / JPEG JFIF density; where the file says nothing it is 1.0 and
``header["spacing_source"]`` is ``"default"``.  Modality is ``"SM"`` for whole-slide
formats (SVS, NDPI, SCN, Philips, BIF, pyramidal OME), ``"OT"`` otherwise.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from medpipe.errors import InvalidSourceError, SourceTooLargeError, UnsupportedSourceError
from medpipe.io.base import MAX_BYTES, Probe, Series, check_declared_size
from medpipe.io.registry import register_reader

__all__ = ["probe_raster", "read_raster", "MAX_BYTES"]

_TIFF = (".tif", ".tiff")
#: Refuse to decode images larger than this (bytes of decoded pixels).
_UNIT_MM = {
    "m": 1000.0,
    "meter": 1000.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "mm": 1.0,
    "millimeter": 1.0,
    "um": 1e-3,
    "µm": 1e-3,
    "\\u00b5m": 1e-3,
    "micron": 1e-3,
    "micrometer": 1e-3,
    "nm": 1e-6,
    "nanometer": 1e-6,
    "inch": 25.4,
    "in": 25.4,
}


def _is_tiff(rel: str) -> bool:
    return rel.lower().endswith(_TIFF)


def probe_raster(root: Path, rel: str) -> Probe:
    """Header-only look at a TIFF, PNG or JPEG file.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the file.

    Returns
    -------
    Probe
        ``kind="raster"``, ``group`` = ``rel``; ``detail`` has format, shape and dtype.

    Raises
    ------
    InvalidSourceError
        Not a readable image of that format.
    SourceTooLargeError
        A PNG/JPEG header past Pillow's decompression-bomb limit.
    """
    path = Path(root) / rel
    if _is_tiff(rel):
        try:
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise InvalidSourceError("TIFF without image data", path=rel)
                s = tif.series[0]
                detail = {
                    "format": "TIFF",
                    "shape": list(s.shape),
                    "axes": s.axes,
                    "dtype": str(s.dtype),
                    "slide": _is_slide(tif),
                }
        except InvalidSourceError:
            raise
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error …
            raise InvalidSourceError(f"not a readable TIFF ({exc})", path=rel) from exc
        return Probe(path=rel, kind="raster", group=rel, detail=detail)
    try:
        with Image.open(path) as im:
            detail = {"format": im.format, "shape": [im.height, im.width], "mode": im.mode}
            im.verify()  # checks the PNG chunk CRCs without decoding
    except Image.DecompressionBombError as exc:
        raise SourceTooLargeError(f"header declares too many pixels ({exc})", path=rel) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidSourceError(f"not a readable image ({exc})", path=rel) from exc
    return Probe(path=rel, kind="raster", group=rel, detail=detail)


def read_raster(root: Path, rel: str) -> Series:
    """Read one raster file into a :class:`Series`.

    Parameters
    ----------
    root
        Archive root.
    rel
        Relative path of the file.

    Returns
    -------
    Series
        ``uid`` = ``rel``; axes as in the module docstring.

    Raises
    ------
    InvalidSourceError
        Unreadable, corrupt or truncated file.
    UnsupportedSourceError
        An axis layout medpipe does not map (e.g. time *and* depth).
    SourceTooLargeError
        More than :data:`MAX_BYTES` of pixels.
    """
    root = Path(root)
    if _is_tiff(rel):
        return _read_tiff(root, rel)
    return _read_pil(root, rel)


# --------------------------------------------------------------------------- TIFF


def _is_slide(tif: tifffile.TiffFile) -> bool:
    flags = ("is_svs", "is_ndpi", "is_scn", "is_philips", "is_bif")
    if any(getattr(tif, f, False) for f in flags):
        return True
    return bool(tif.is_ome and tif.series and tif.series[0].is_pyramidal)


def _read_tiff(root: Path, rel: str) -> Series:
    path = root / rel
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InvalidSourceError("TIFF without image data", path=rel)
            s = tif.series[0]
            nbytes = int(np.prod(s.shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
            check_declared_size(nbytes, rel, f"{'×'.join(map(str, s.shape))} {s.dtype}")
            data = s.asarray()
            axes_in = s.axes
            spacing_yx, spacing_z, source = _tiff_spacing(tif)
            slide = _is_slide(tif)
            photometric = s.keyframe.photometric
    except (InvalidSourceError, SourceTooLargeError):
        raise
    except Exception as exc:
        raise InvalidSourceError(f"not a readable TIFF ({exc})", path=rel) from exc
    data, axes = _canonical(data, axes_in, rel, photometric=photometric)
    return _series(
        rel, data, axes, spacing_yx, spacing_z, source, modality="SM" if slide else "OT", fmt="TIFF"
    )


def _canonical(
    data: np.ndarray, axes: str, rel: str, *, photometric: Any = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map tifffile's axes letters onto ``([c,] z, y, x)``."""
    axes = axes.upper()
    # drop singleton axes other than Y, X
    keep = [i for i, a in enumerate(axes) if a in "YX" or data.shape[i] > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    colour = [i for i, a in enumerate(axes) if a in "SC"]
    stack = [i for i, a in enumerate(axes) if a not in "SCYX"]
    if len(colour) > 1 or len(stack) > 1 or axes.count("Y") != 1 or axes.count("X") != 1:
        raise UnsupportedSourceError(f"TIFF axes {axes!r} not mapped to ([c,] z, y, x)", path=rel)
    order = colour + stack + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    if not colour:
        if not stack:
            data = data[np.newaxis]
        return data, ("z", "y", "x")
    # samples: keep RGB, drop alpha; a separate C axis keeps every channel
    if axes[colour[0]] == "S" and data.shape[0] in (2, 4):
        data = data[:-1]
    if data.shape[0] == 1:
        data = data[0]
        return (data, ("z", "y", "x")) if stack else (data[np.newaxis], ("z", "y", "x"))
    return data, (("c", "z", "y", "x") if stack else ("c", "y", "x"))


def _tiff_spacing(tif: tifffile.TiffFile) -> tuple[tuple[float, float] | None, float | None, str]:
    """``((sy, sx) mm or None, sz mm or None, source)`` from OME, ImageJ or TIFF tags."""
    if tif.is_ome and tif.ome_metadata:
        got = _ome_spacing(tif.ome_metadata)
        if got is not None:
            return got[0], got[1], "ome"
    page = tif.pages.first
    tags = page.tags
    xres, yres = tags.get("XResolution"), tags.get("YResolution")
    unit = tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 2  # TIFF default: inch
    ij = tif.imagej_metadata or {}
    ij_unit = str(ij.get("unit", "")).strip().lower()
    if xres is not None and yres is not None:
        px = _ratio(xres.value)
        py = _ratio(yres.value)
        if px and py:
            if unit_value == 1 and ij_unit in _UNIT_MM:  # ImageJ: unit in its metadata
                mm = _UNIT_MM[ij_unit]
                sz = float(ij["spacing"]) * mm if "spacing" in ij else None
                return (mm / py, mm / px), sz, "imagej"
            if unit_value in (2, 3):
                mm = 25.4 if unit_value == 2 else 10.0
                return (mm / py, mm / px), None, "tiff-resolution"
    return None, None, "default"


def _ratio(value: Any) -> float | None:
    try:
        if isinstance(value, tuple):
            num, den = value
            return float(num) / float(den) if den else None
        return float(value)
    except (TypeError, ValueError):
        return None


def _ome_spacing(xml: str) -> tuple[tuple[float, float] | None, float | None] | None:
    try:
        tree = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((e for e in tree.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None

    def size(axis: str) -> float | None:
        v = pixels.get(f"PhysicalSize{axis}")
        if v is None:
            return None
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm").lower()
        return float(v) * _UNIT_MM.get(unit, 1e-3)

    sx, sy, sz = size("X"), size("Y"), size("Z")
    if sx is None or sy is None:
        return None
    return (sy, sx), sz


# --------------------------------------------------------------------------- PNG / JPEG


def _read_pil(root: Path, rel: str) -> Series:
    path = root / rel
    try:
        with Image.open(path) as im:
            fmt = im.format
            check_declared_size(im.width * im.height * 4, rel, f"{im.width}×{im.height} RGBA")
            dpi = im.info.get("dpi")
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("L" if mode == "1" else "RGB")
            elif mode == "PA":
                im = im.convert("RGBA")
            arr = np.asarray(im)
    except SourceTooLargeError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own pixel-count guard, first
        raise SourceTooLargeError(f"header declares too many pixels ({exc})", path=rel) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidSourceError(f"not a readable image ({exc})", path=rel) from exc
    if arr.ndim == 2:
        data, axes = arr[np.newaxis], ("z", "y", "x")
    else:
        if arr.shape[-1] in (2, 4):  # LA, RGBA: drop alpha
            arr = arr[..., :-1]
        if arr.shape[-1] == 1:
            data, axes = arr[np.newaxis, ..., 0], ("z", "y", "x")
        else:
            data, axes = np.moveaxis(arr, -1, 0), ("c", "y", "x")
    data = np.ascontiguousarray(data)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    spacing_yx = None
    source = "default"
    if dpi and all(float(d) > 0 for d in dpi[:2]):
        spacing_yx = (25.4 / float(dpi[1]), 25.4 / float(dpi[0]))
        source = "png-phys" if fmt == "PNG" else "jfif-density"
    out = _series(rel, data, axes, spacing_yx, None, source, modality="OT", fmt=fmt)
    out.header["mode"] = mode
    return out


def _series(
    rel: str,
    data: np.ndarray,
    axes: tuple[str, ...],
    spacing_yx: tuple[float, float] | None,
    spacing_z: float | None,
    source: str,
    *,
    modality: str,
    fmt: str | None,
) -> Series:
    sy, sx = spacing_yx if spacing_yx is not None else (1.0, 1.0)
    spatial = [a for a in axes if a != "c"]
    spacing = (sy, sx) if spatial == ["y", "x"] else (spacing_z or 1.0, sy, sx)
    header = {"format": fmt, "spacing_source": source}
    if "z" in axes and spacing_z is None:
        header["z_spacing_source"] = "default"
    return Series(
        uid=rel,
        sources=[rel],
        data=data,
        modality=modality,
        spacing=tuple(float(v) for v in spacing),
        axes=axes,
        header=header,
    )


class RasterReader:
    """TIFF (plain, OME, whole-slide base level), PNG and JPEG images; one series per file."""

    name = "raster"
    suffixes: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
    series_per_image = False

    def probe(self, root: Path, rel: str) -> Probe:
        """See :func:`probe_raster`."""
        return probe_raster(root, rel)

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        """One series per image file (masks are not read)."""
        return [read_raster(root, r) for r in images]


register_reader(RasterReader())
