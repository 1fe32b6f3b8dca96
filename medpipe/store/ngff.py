"""NGFF 0.5 metadata: a pure encode/decode pair with medpipe's image geometry.

Geometry follows :mod:`medpipe.geometry`: ``spacing`` (one entry per spatial axis,
``z, y, x`` order, mm), ``origin`` (LPS mm of voxel 0) and ``direction`` (rows = LPS
unit vectors of the spatial axes ``z, y, x``).  The NGFF ``scale`` of each level is its
spacing; the NGFF ``translation`` of level 0 is ``direction @ origin`` restricted to the
spatial axes, i.e. the coordinate of voxel 0 along each array axis in the image's own
(possibly rotated) frame.  For an axis-aligned image this is simply the origin.  NGFF
cannot hold a rotation, so :func:`encode` also returns the exact LPS geometry, which
medpipe stores under the ``"medpipe"`` group attribute; :func:`decode` prefers it and
falls back to the NGFF translation (for images written by other tools).

Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medpipe.geometry import identity_direction

__all__ = [
    "NGFF_VERSION",
    "SPATIAL",
    "ImageGeometry",
    "validate_axes",
    "translation0",
    "level_transforms",
    "multiscale",
    "encode",
    "decode",
    "level_frames",
    "labels_group",
    "label_image",
]

NGFF_VERSION = "0.5"
AXIS_ORDER = {"t": 0, "c": 1, "z": 2, "y": 3, "x": 4}
AXIS_TYPE = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
#: The spatial axes, in the order of ``spacing`` and of the rows of ``direction``.
SPATIAL = ("z", "y", "x")
LABEL_COLORS = [
    [255, 0, 0, 255],
    [0, 255, 0, 255],
    [0, 0, 255, 255],
    [255, 255, 0, 255],
    [255, 0, 255, 255],
    [0, 255, 255, 255],
]


def _identity() -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(r) for r in identity_direction())


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image's voxels are: axes, spacing, origin, direction and pyramid levels.

    Attributes
    ----------
    axes
        Axis names, ordered ``t, c, z, y, x`` (a subset ending in ``y, x``).
    spacing
        One spacing (mm) per spatial axis present, ``z, y, x`` order.
    origin
        LPS position (mm) of voxel 0.
    direction
        3×3, rows = LPS unit vectors of ``z, y, x``.
    levels
        Number of pyramid levels (level ``n`` halves y and x ``n`` times).
    """

    axes: tuple[str, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[tuple[float, ...], ...] = field(default_factory=_identity)
    levels: int = 1

    @property
    def spatial(self) -> tuple[str, ...]:
        """The spatial axes present, in ``axes`` order."""
        return tuple(a for a in self.axes if a in SPATIAL)


def validate_axes(axes: Sequence[str], ndim: int) -> tuple[str, ...]:
    """Check axis names against NGFF's rules and the data's dimensionality.

    Raises
    ------
    ValueError
        Wrong count, unknown or repeated names, wrong order, or not ending in ``y, x``.
    """
    axes = tuple(axes)
    if len(axes) != ndim:
        raise ValueError(f"axes {axes} do not match the data's {ndim} dimensions")
    if len(set(axes)) != len(axes) or any(a not in AXIS_ORDER for a in axes):
        raise ValueError(f"axes must be distinct names from t, c, z, y, x; got {axes}")
    if [AXIS_ORDER[a] for a in axes] != sorted(AXIS_ORDER[a] for a in axes):
        raise ValueError(f"axes must be ordered t, c, z, y, x (NGFF); got {axes}")
    if axes[-2:] != ("y", "x"):
        raise ValueError(f"the last two axes must be y, x; got {axes}")
    return axes


def translation0(
    axes: Sequence[str], origin: Sequence[float], direction: Sequence[Sequence[float]]
) -> list[float]:
    """NGFF translation of level 0: the origin projected on each spatial array axis."""
    d = np.asarray(direction, dtype=float)
    o = np.asarray(origin, dtype=float)
    return [float(d[SPATIAL.index(a)] @ o) if a in SPATIAL else 0.0 for a in axes]


def level_transforms(
    axes: Sequence[str],
    spacing: Sequence[float],
    translation: Sequence[float],
    level: int,
    *,
    centred: bool,
) -> list[dict[str, Any]]:
    """Scale and translation of ``level`` (in-plane factor ``2**level``).

    ``centred`` levels are block means, whose voxel 0 lies half a block from level 0's;
    non-centred levels (labels: plain decimation) keep level 0's voxel centres.
    """
    sp = dict(zip([a for a in axes if a in SPATIAL], spacing, strict=True))
    factor = 2**level
    scale, trans = [], []
    for a, t0 in zip(axes, translation, strict=True):
        s = float(sp.get(a, 1.0))
        if a in ("y", "x"):
            scale.append(s * factor)
            trans.append(t0 + ((factor - 1) / 2 * s if centred else 0.0))
        else:
            scale.append(s)
            trans.append(t0)
    return [
        {"type": "scale", "scale": scale},
        {"type": "translation", "translation": trans},
    ]


def _ngff_axes(axes: Sequence[str]) -> list[dict[str, str]]:
    out = []
    for a in axes:
        entry = {"name": a, "type": AXIS_TYPE[a]}
        if a in SPATIAL:
            entry["unit"] = "millimeter"
        out.append(entry)
    return out


def multiscale(
    name: str,
    axes: Sequence[str],
    spacing: Sequence[float],
    translation: Sequence[float],
    n_levels: int,
    *,
    centred: bool,
) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry (``type`` ``mean`` when centred, else ``nearest``)."""
    return {
        "name": name,
        "axes": _ngff_axes(axes),
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": level_transforms(
                    axes, spacing, translation, level, centred=centred
                ),
            }
            for level in range(n_levels)
        ],
        "type": "mean" if centred else "nearest",
    }


def _check(geometry: ImageGeometry) -> tuple[np.ndarray, np.ndarray]:
    validate_axes(geometry.axes, len(geometry.axes))
    spatial = geometry.spatial
    if len(geometry.spacing) != len(spatial):
        raise ValueError(
            f"spacing {tuple(geometry.spacing)} needs one entry per spatial axis {spatial}"
        )
    if any(not (float(s) > 0 and math.isfinite(float(s))) for s in geometry.spacing):
        raise ValueError(f"spacing must be positive and finite, got {tuple(geometry.spacing)}")
    dmat = np.asarray(geometry.direction, dtype=float)
    omat = np.asarray(geometry.origin, dtype=float)
    if dmat.shape != (3, 3) or omat.shape != (3,):
        raise ValueError("origin must have 3 entries and direction must be 3×3")
    if int(geometry.levels) < 1:
        raise ValueError(f"levels must be at least 1, got {geometry.levels}")
    return omat, dmat


def encode(geometry: ImageGeometry, *, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """NGFF 0.5 metadata of an image, and its exact geometry as plain JSON.

    Parameters
    ----------
    geometry
        The image's geometry.
    name
        The multiscale's name (the series key).

    Returns
    -------
    (dict, dict)
        The ``"ome"`` group attribute (``version`` and one ``multiscales`` entry of
        ``geometry.levels`` block-mean levels) and ``{"axes", "spacing", "origin",
        "direction", "levels"}`` for the ``"medpipe"`` attribute.

    Raises
    ------
    ValueError
        Invalid axes, spacing, origin, direction or levels.
    """
    omat, dmat = _check(geometry)
    axes = tuple(geometry.axes)
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [
            multiscale(
                name,
                axes,
                geometry.spacing,
                translation0(axes, omat, dmat),
                int(geometry.levels),
                centred=True,
            )
        ],
    }
    exact = {
        "axes": list(axes),
        "spacing": [float(s) for s in geometry.spacing],
        "origin": [float(v) for v in omat],
        "direction": [[float(v) for v in row] for row in dmat],
        "levels": int(geometry.levels),
    }
    return ome, exact


def level_frames(ms: Mapping[str, Any]) -> tuple[list[str], list[tuple[list[float], list[float]]]]:
    """Axis names and ``(scale, translation)`` of every level of a ``multiscales`` entry."""
    axes = [a["name"] for a in ms["axes"]]
    frames = []
    for ds in ms["datasets"]:
        scale, trans = [1.0] * len(axes), [0.0] * len(axes)
        for t in ds["coordinateTransformations"]:
            if t["type"] == "scale":
                scale = [float(v) for v in t["scale"]]
            elif t["type"] == "translation":
                trans = [float(v) for v in t["translation"]]
        frames.append((scale, trans))
    return axes, frames


def decode(attrs: Mapping[str, Any]) -> ImageGeometry:
    """The geometry of an image from its group attributes (inverse of :func:`encode`).

    Axes, spacing and levels come from the NGFF ``multiscales``; origin and direction
    from the ``"medpipe"`` attribute when present, else from the NGFF translation with
    an axis-aligned direction (an absent spatial axis gets origin 0 along it).

    Parameters
    ----------
    attrs
        Group attributes with ``"ome"`` (and optionally ``"medpipe"``).

    Returns
    -------
    ImageGeometry
    """
    ms = attrs["ome"]["multiscales"][0]
    axes, frames = level_frames(ms)
    scale0, trans0 = frames[0]
    spatial = [i for i, a in enumerate(axes) if a in SPATIAL]
    spacing = tuple(scale0[i] for i in spatial)
    exact = attrs.get("medpipe") or {}
    if "direction" in exact and "origin" in exact:
        direction = tuple(tuple(float(v) for v in row) for row in exact["direction"])
        origin = tuple(float(v) for v in exact["origin"])
    else:
        direction = _identity()
        rows = np.asarray(direction)[[SPATIAL.index(axes[i]) for i in spatial]]
        t = np.asarray([trans0[i] for i in spatial])
        origin = tuple(float(v) for v in np.linalg.lstsq(rows, t, rcond=None)[0])
    return ImageGeometry(
        axes=tuple(axes),
        spacing=spacing,
        origin=origin,  # type: ignore[arg-type]
        direction=direction,
        levels=len(frames),
    )


def labels_group(names: Sequence[str]) -> dict[str, Any]:
    """The ``"ome"`` attribute of an image's ``labels`` group."""
    return {"version": NGFF_VERSION, "labels": list(names)}


def label_image(
    name: str,
    index: int,
    spatial: Sequence[str],
    spacing: Sequence[float],
    translation: Sequence[float],
    n_levels: int,
) -> dict[str, Any]:
    """The ``"ome"`` attribute of one label image (decimated levels, a colour per label).

    ``translation`` is the image's level-0 translation restricted to ``spatial``.
    """
    colors = [{"label-value": 1, "rgba": LABEL_COLORS[index % len(LABEL_COLORS)]}]
    return {
        "version": NGFF_VERSION,
        "image-label": {"colors": colors, "source": {"image": "../../"}},
        "multiscales": [multiscale(name, spatial, spacing, translation, n_levels, centred=False)],
    }
