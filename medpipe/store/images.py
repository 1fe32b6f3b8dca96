"""Write and open series as NGFF 0.5 multiscale images on Zarr v3.

Layout of one series group (``path``, e.g. ``images/<key>``)::

    <path>/zarr.json          group; attributes {"ome": {"version": "0.5", "multiscales": [...]},
                              "medpipe": {"complete": true, "axes", "spacing", "origin",
                              "direction", ...caller's attrs}}
    <path>/0, /1, ...         the levels (level 0 full resolution, then in-plane 2x means)
    <path>/labels/zarr.json   {"ome": {"version": "0.5", "labels": [names]}}
    <path>/labels/<name>/     uint8 NGFF multiscale with "image-label" metadata

Every level array carries ``dimension_names`` (the axes), so plain xarray can read it:
``xarray.open_zarr(store, group=path, consolidated=False, drop_variables=[other levels])``
(the levels differ in size, so one level at a time).  Geometry: :mod:`medpipe.store.ngff`;
atomicity: :mod:`medpipe.store.atomic`.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr

from medpipe import __version__
from medpipe.errors import SeriesNotFoundError
from medpipe.geometry import identity_direction
from medpipe.store import layout, ngff
from medpipe.store.atomic import replace, set_complete, temporary_sibling
from medpipe.store.fs import (
    ensure_parent_groups,
    is_local,
    join,
    jsonable,
    read_group_json,
    store_root,
    zarr_store,
)
from medpipe.store.pyramid import as_label, check_levels, default_chunks, n_levels, write_pyramid

__all__ = ["write_image", "open_image", "open_labels", "image_version"]


def image_version(attrs: Mapping[str, Any]) -> str:
    """Identity of one written version of a series (its ingest run and write time).

    Parameters
    ----------
    attrs
        The series' ``"medpipe"`` attributes (or an opened image's ``attrs``).

    Returns
    -------
    str
        ``"<ingest_run>@<written_at>"``.
    """
    return f"{attrs.get('ingest_run', '')}@{attrs.get('written_at', '')}"


def _as_voxels(data: Any) -> np.ndarray | da.Array:
    if not isinstance(data, da.Array):
        data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported dtype {data.dtype}")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def write_image(
    data: np.ndarray | da.Array | xr.DataArray,
    *,
    store: str,
    path: str,
    axes: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    direction: Sequence[Sequence[float]] | None = None,
    attrs: Mapping[str, Any] | None = None,
    labels: Mapping[str, np.ndarray | da.Array | xr.DataArray] | None = None,
    chunks: Sequence[int] | None = None,
    levels: int | None = None,
) -> str:
    """Write one series as an NGFF 0.5 multiscale image, atomically and idempotently.

    When ``data`` is dask-backed this is where it is computed (``da.store`` into the
    zarr arrays, on whatever scheduler is active), chunk by chunk.

    Parameters
    ----------
    data
        The voxels, in ``axes`` order.  Booleans are stored as uint8.  An
        :class:`xarray.DataArray` (as :func:`open_image` returns) brings its geometry:
        ``axes`` default to its dims and ``spacing``, ``origin`` and ``direction`` to
        its attrs.
    store
        Store root: a local path or an fsspec URL.
    path
        Group path under the root, e.g. ``"images/<key>"``.
    axes
        Axis names, ordered ``t, c, z, y, x`` (a subset ending in ``y, x``).
    spacing
        One spacing (mm) per spatial axis (``z``, ``y``, ``x`` that are present).
    origin
        LPS position (mm) of voxel 0 (default 0).
    direction
        3×3 matrix, rows = LPS unit vectors of ``z, y, x``; default axis-aligned.
    attrs
        Extra JSON-able attributes (modality, rescale, source hashes …), stored under
        the group attribute ``"medpipe"`` together with the geometry.
    labels
        ``name -> mask`` on the spatial grid (``data``'s shape without ``t``/``c``),
        stored as uint8 NGFF labels.
    chunks
        Zarr chunk shape (default :func:`~medpipe.store.pyramid.default_chunks`).
    levels
        Number of pyramid levels (default: halve y, x while the plane is > 256 px).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        Inconsistent axes, spacing or label shapes.
    StoreError
        The store cannot be written.
    """
    if isinstance(data, xr.DataArray):
        axes = tuple(data.dims) if axes is None else axes
        spacing = data.attrs.get("spacing") if spacing is None else spacing
        origin = data.attrs.get("origin") if origin is None else origin
        direction = data.attrs.get("direction") if direction is None else direction
        data = data.data
    if axes is None or spacing is None:
        raise ValueError("write_image needs axes and spacing (or a DataArray carrying them)")
    data = _as_voxels(data)
    axes = ngff.validate_axes(axes, data.ndim)
    chunks = tuple(
        default_chunks(data.shape, axes, itemsize=data.dtype.itemsize) if chunks is None else chunks
    )
    if len(chunks) != data.ndim:
        raise ValueError(f"chunks {chunks} do not match the data's {data.ndim} dimensions")
    direction = identity_direction() if direction is None else direction
    geometry = ngff.ImageGeometry(
        axes=axes,
        spacing=tuple(spacing),
        origin=tuple(origin) if origin is not None else (0.0, 0.0, 0.0),  # type: ignore[arg-type]
        direction=tuple(tuple(r) for r in direction),
        levels=check_levels(data.shape, n_levels(data.shape) if levels is None else int(levels)),
    )
    name = posixpath.basename(path.strip("/"))
    ome, exact = ngff.encode(geometry, name=name)
    spatial = geometry.spatial
    spatial_shape = tuple(n for n, a in zip(data.shape, axes, strict=True) if a in ngff.SPATIAL)
    labels = {k: (v.data if isinstance(v, xr.DataArray) else v) for k, v in (labels or {}).items()}
    for lname, mask in labels.items():
        if not lname or "/" in lname or lname.startswith("."):
            raise ValueError(f"invalid label name {lname!r}")
        if tuple(mask.shape) != spatial_shape:
            raise ValueError(
                f"label {lname!r} shape {mask.shape} != spatial shape {spatial_shape}"
            )

    meta = jsonable(dict(attrs or {}))
    meta.update(
        {
            "axes": exact["axes"],
            "spacing": exact["spacing"],
            "origin": exact["origin"],
            "direction": exact["direction"],
            "shape": [int(n) for n in data.shape],
            "dtype": str(data.dtype),
            "levels": exact["levels"],
            "labels": sorted(labels),
            "medpipe_version": __version__,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "complete": False,
        }
    )

    fs, root = store_root(store)
    target = join(root, path)
    tmp = temporary_sibling(target)
    try:
        ensure_parent_groups(fs, root, path)
        group = zarr.create_group(
            zarr_store(fs, tmp),
            zarr_format=3,
            attributes={"ome": ome, "medpipe": meta},
            overwrite=True,
        )
        write_pyramid(group, data, axes, chunks, geometry.levels, mean=True)
        if labels:
            translation = ngff.translation0(axes, geometry.origin, geometry.direction)
            _write_labels(
                group, labels, geometry, translation[-len(spatial) :], chunks
            )
        if is_local(fs):
            set_complete(fs, tmp, True)
            replace(fs, tmp, target)
        else:
            replace(fs, tmp, target)
            set_complete(fs, target, True)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp, recursive=True)
        except Exception:  # clean-up is best effort; clean_temporaries retries
            pass
        raise
    return path


def _write_labels(
    group: zarr.Group,
    labels: Mapping[str, np.ndarray | da.Array],
    geometry: ngff.ImageGeometry,
    translation: Sequence[float],
    chunks: Sequence[int],
) -> None:
    names = sorted(labels)
    spatial = geometry.spatial
    lgroup = group.create_group(layout.IMAGE_LABELS, attributes={"ome": ngff.labels_group(names)})
    lchunks = tuple(c for c, a in zip(chunks, geometry.axes, strict=True) if a in ngff.SPATIAL)
    for i, name in enumerate(names):
        ome = ngff.label_image(
            name, i, spatial, geometry.spacing, translation, geometry.levels
        )
        g = lgroup.create_group(name, attributes={"ome": ome})
        write_pyramid(g, as_label(labels[name]), spatial, lchunks, geometry.levels, mean=False)


def _open_multiscale(
    fs: fsspec.AbstractFileSystem, full: str, level: int, *, extra_attrs: Mapping[str, Any]
) -> xr.DataArray:
    meta = read_group_json(fs, full)
    if meta is None:
        raise SeriesNotFoundError(f"no group at {full}")
    ms = meta["attributes"]["ome"]["multiscales"][0]
    axes, frames = ngff.level_frames(ms)
    if not 0 <= level < len(frames):
        raise SeriesNotFoundError(f"level {level} not in 0..{len(frames) - 1} at {full}")
    scale, trans = frames[level]
    _, trans0 = frames[0]
    arr = zarr.open_array(
        zarr_store(fs, full, read_only=True), path=ms["datasets"][level]["path"], mode="r"
    )
    data = da.from_zarr(arr)
    coords = {}
    spacing = []
    for i, a in enumerate(axes):
        if a in ngff.SPATIAL:
            coords[a] = (trans[i] - trans0[i]) + np.arange(data.shape[i]) * scale[i]
            spacing.append(scale[i])
    attrs = dict(extra_attrs)
    attrs.update({"spacing": spacing, "level": level})
    return xr.DataArray(data, dims=axes, coords=coords, attrs=attrs)


def _complete_meta(fs: fsspec.AbstractFileSystem, root: str, store: str, path: str) -> dict:
    meta = read_group_json(fs, join(root, path))
    medpipe = (meta or {}).get("attributes", {}).get("medpipe", {})
    if meta is None or not medpipe.get("complete", False):
        raise SeriesNotFoundError(f"no complete series {path!r} in store {store!r}")
    return medpipe


def open_image(store: str, path: str, *, level: int = 0) -> xr.DataArray:
    """Open a series lazily as a dask-backed :class:`xarray.DataArray`.

    Parameters
    ----------
    store
        Store root (local path or fsspec URL).
    path
        The series group, e.g. ``"images/<key>"``.
    level
        Pyramid level (0 = full resolution).

    Returns
    -------
    xarray.DataArray
        Dims are the axes; spatial coords are ``index * spacing`` in mm (offset so that
        all levels share level 0's frame); attrs hold ``spacing`` (of this level),
        ``origin``, ``direction`` and everything under ``"medpipe"``.

    Raises
    ------
    SeriesNotFoundError
        ``path`` is absent or not completely written.
    """
    fs, root = store_root(store)
    medpipe = _complete_meta(fs, root, store, path)
    out = _open_multiscale(fs, join(root, path), level, extra_attrs=medpipe)
    out.name = layout.key_of(path)
    return out


def open_labels(store: str, path: str, *, level: int = 0) -> dict[str, xr.DataArray]:
    """Open a series' labels lazily, ``name -> DataArray`` (empty when it has none).

    Raises
    ------
    SeriesNotFoundError
        ``path`` is absent or not completely written.
    """
    fs, root = store_root(store)
    medpipe = _complete_meta(fs, root, store, path)
    lroot = join(root, layout.image_labels(path))
    lmeta = read_group_json(fs, lroot)
    if lmeta is None:
        return {}
    geometry = {k: medpipe[k] for k in ("origin", "direction") if k in medpipe}
    out = {}
    for name in lmeta["attributes"]["ome"].get("labels", []):
        arr = _open_multiscale(fs, posixpath.join(lroot, name), level, extra_attrs=geometry)
        arr.name = name
        out[name] = arr
    return out
