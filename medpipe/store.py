"""The OME-Zarr store: write and open series as NGFF 0.5 multiscale images on Zarr v3.

Layout of one series group (``path``, e.g. ``images/<key>``)::

    <path>/zarr.json          group; attributes {"ome": {"version": "0.5", "multiscales": [...]},
                              "medpipe": {"complete": true, "axes", "spacing", "origin",
                              "direction", ...caller's attrs}}
    <path>/0, /1, ...         the levels (level 0 full resolution, then in-plane 2x means)
    <path>/labels/zarr.json   {"ome": {"version": "0.5", "labels": [names]}}
    <path>/labels/<name>/     uint8 NGFF multiscale with "image-label" metadata

Every level array carries ``dimension_names`` (the axes), so plain xarray can read it:
``xarray.open_zarr(store, group=path, consolidated=False, drop_variables=[other levels])``
(the levels differ in size, so one level at a time).

Geometry
--------
``spacing`` (one entry per spatial axis, ``z, y, x`` order, mm), ``origin`` (LPS mm of
voxel 0) and ``direction`` (rows = LPS unit vectors of the spatial axes ``z, y, x``)
follow :mod:`medpipe.io.base`.  The NGFF ``scale`` of each level is its spacing; the
NGFF ``translation`` of level 0 is ``direction @ origin`` restricted to the spatial
axes, i.e. the coordinate of voxel 0 along each array axis in the image's own (possibly
rotated) frame.  For an axis-aligned image this is simply the origin.  The exact LPS
geometry is always in the ``medpipe`` attributes.

Atomicity
---------
Every write goes to a hidden sibling ``<parent>/.tmp-<name>-<uuid>`` and is moved into
place once complete; a replaced series is moved aside first and deleted afterwards, so
the target is never half written.  On a local file system the moves are ``os.rename``
(atomic).  On object stores (``s3://`` …) fsspec's ``mv`` is a copy followed by a delete,
which is not atomic: there the ``"complete": true`` marker is written *after* the copy
and removed *before* an old series is deleted, and :func:`exists` (and everything that
opens a series) trusts only that marker.  Temporaries left by crashed writers are
removed by :func:`clean_temporaries`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.codecs import BloscCodec, BloscShuffle

from medpipe import __version__
from medpipe.errors import SeriesNotFoundError, StoreError, StoreLockedError
from medpipe.geometry import identity_direction

__all__ = [
    "write_image",
    "open_image",
    "open_labels",
    "read_attrs",
    "list_groups",
    "subgroups",
    "exists",
    "remove",
    "store_root",
    "clean_temporaries",
    "atomic_group",
    "store_lock",
]

NGFF_VERSION = "0.5"
_TMP_PREFIX = ".tmp-"
_AXIS_ORDER = {"t": 0, "c": 1, "z": 2, "y": 3, "x": 4}
_AXIS_TYPE = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_SPATIAL = ("z", "y", "x")
#: Planes with more pixels than this are chunked in blocks instead of whole slices.
_MAX_PLANE_PIXELS = 1024 * 1024
_BLOCK = 1024
#: Target bytes per chunk when whole planes are grouped along z.
_TARGET_CHUNK_BYTES = 1 << 20
#: Blosc zstd at level 1: within 1% of level 5 on CT, at less than half the cost.
_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle)
#: Levels are added while the larger in-plane edge of the last level exceeds this.
_MIN_PLANE_EDGE = 256
_LABEL_COLORS = [
    [255, 0, 0, 255],
    [0, 255, 0, 255],
    [0, 0, 255, 255],
    [255, 255, 0, 255],
    [255, 0, 255, 255],
    [0, 255, 255, 255],
]


# --------------------------------------------------------------------------- paths


def store_root(store: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve a store URL to a file system and the root path on it.

    Parameters
    ----------
    store
        A local path (the default kind) or any fsspec URL (``s3://bucket/prefix``,
        ``memory://x`` …).

    Returns
    -------
    (fsspec.AbstractFileSystem, str)
        The file system and the root path without a trailing slash (absolute for
        local paths).
    """
    fs, root = fsspec.core.url_to_fs(str(store))
    if _is_local(fs):
        root = os.path.abspath(root)
    return fs, root.rstrip("/") or "/"


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _join(root: str, path: str) -> str:
    path = path.strip("/")
    return posixpath.join(root, path) if path else root


def _zarr_store(fs: fsspec.AbstractFileSystem, full: str, *, read_only: bool = False) -> Any:
    if _is_local(fs):
        return zarr.storage.LocalStore(full, read_only=read_only)
    return zarr.storage.FsspecStore.from_mapper(fs.get_mapper(full), read_only=read_only)


def _read_group_json(fs: fsspec.AbstractFileSystem, full: str) -> dict[str, Any] | None:
    try:
        with fs.open(posixpath.join(full, "zarr.json"), "rb") as f:
            meta = json.load(f)
    except (FileNotFoundError, OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    return meta


def _write_group_json(fs: fsspec.AbstractFileSystem, full: str, attrs: Mapping[str, Any]) -> None:
    meta = {"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)}
    fs.makedirs(full, exist_ok=True)
    data = json.dumps(meta, indent=2).encode()
    if _is_local(fs):
        # write-then-rename so a reader never sees a half-written zarr.json
        tmp = posixpath.join(full, f".zarr.json.{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, posixpath.join(full, "zarr.json"))
    else:
        fs.pipe_file(posixpath.join(full, "zarr.json"), data)


def _ensure_parent_groups(fs: fsspec.AbstractFileSystem, root: str, path: str) -> None:
    """Write plain group metadata for the store root and every ancestor of ``path``."""
    parts = [p for p in path.strip("/").split("/") if p][:-1]
    current = root
    for part in [None, *parts]:
        if part is not None:
            current = posixpath.join(current, part)
        if _read_group_json(fs, current) is None:
            _write_group_json(fs, current, {})


# --------------------------------------------------------------------------- metadata


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _validate_axes(axes: Sequence[str], ndim: int) -> tuple[str, ...]:
    axes = tuple(axes)
    if len(axes) != ndim:
        raise ValueError(f"axes {axes} do not match the data's {ndim} dimensions")
    if len(set(axes)) != len(axes) or any(a not in _AXIS_ORDER for a in axes):
        raise ValueError(f"axes must be distinct names from t, c, z, y, x; got {axes}")
    if [_AXIS_ORDER[a] for a in axes] != sorted(_AXIS_ORDER[a] for a in axes):
        raise ValueError(f"axes must be ordered t, c, z, y, x (NGFF); got {axes}")
    if axes[-2:] != ("y", "x"):
        raise ValueError(f"the last two axes must be y, x; got {axes}")
    return axes


def _translation0(
    axes: Sequence[str], origin: Sequence[float], direction: Sequence[Sequence[float]]
) -> list[float]:
    """NGFF translation of level 0: the origin projected on each spatial array axis."""
    d = np.asarray(direction, dtype=float)
    o = np.asarray(origin, dtype=float)
    out = []
    for a in axes:
        out.append(float(d[_SPATIAL.index(a)] @ o) if a in _SPATIAL else 0.0)
    return out


def _level_transforms(
    axes: Sequence[str],
    spacing: Sequence[float],
    translation0: Sequence[float],
    level: int,
    *,
    centred: bool,
) -> list[dict[str, Any]]:
    """Scale and translation of ``level`` (in-plane factor ``2**level``).

    ``centred`` levels are block means, whose voxel 0 lies half a block from level 0's;
    non-centred levels (labels: plain decimation) keep level 0's voxel centres.
    """
    sp = dict(zip([a for a in axes if a in _SPATIAL], spacing, strict=True))
    factor = 2**level
    scale, trans = [], []
    for a, t0 in zip(axes, translation0, strict=True):
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
        entry = {"name": a, "type": _AXIS_TYPE[a]}
        if a in _SPATIAL:
            entry["unit"] = "millimeter"
        out.append(entry)
    return out


def _multiscale(
    name: str,
    axes: Sequence[str],
    spacing: Sequence[float],
    translation0: Sequence[float],
    n_levels: int,
    *,
    centred: bool,
) -> dict[str, Any]:
    return {
        "name": name,
        "axes": _ngff_axes(axes),
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": _level_transforms(
                    axes, spacing, translation0, level, centred=centred
                ),
            }
            for level in range(n_levels)
        ],
        "type": "mean" if centred else "nearest",
    }


# --------------------------------------------------------------------------- chunking


def default_chunks(
    shape: Sequence[int], axes: Sequence[str], *, itemsize: int = 2
) -> tuple[int, ...]:
    """Zarr chunk shape: whole planes stacked to about 1 MiB, or 1024² blocks for big planes.

    Small planes (a 143×161 CT slice is 46 kB) are grouped along ``z`` so each chunk
    holds about :data:`_TARGET_CHUNK_BYTES`: thousands of tiny chunks cost far more in
    per-chunk overhead than they save.  A plane of 512² int16 or more is one chunk per
    slice; planes over 1M pixels are split into 1024² blocks.

    Parameters
    ----------
    shape, axes
        The array's shape and axis names.
    itemsize
        Bytes per voxel, to size the ``z`` grouping.

    Returns
    -------
    tuple of int
    """
    ny, nx = shape[-2], shape[-1]
    big = ny * nx > _MAX_PLANE_PIXELS
    per_plane = max(1, ny * nx * itemsize)
    out = []
    for n, a in zip(shape, axes, strict=True):
        if a in ("y", "x"):
            out.append(max(1, min(n, _BLOCK) if big else n))
        elif a == "c":
            out.append(max(1, n if n <= 4 else 1))
        elif a == "z" and not big:
            out.append(max(1, min(n, _TARGET_CHUNK_BYTES // per_plane)))
        else:
            out.append(1)
    return tuple(out)


def _n_levels(shape: Sequence[int]) -> int:
    ny, nx = shape[-2], shape[-1]
    n = 1
    while max(ny, nx) > _MIN_PLANE_EDGE and min(ny, nx) >= 2:
        ny, nx = ny // 2, nx // 2
        n += 1
    return n


def _aligned(dchunks: tuple[tuple[int, ...], ...], zchunks: Sequence[int]) -> bool:
    """True when every dask chunk boundary falls on a zarr chunk boundary."""
    for dims, z in zip(dchunks, zchunks, strict=True):
        if any(c % z for c in dims[:-1]):
            return False
    return True


def _as_dask(data: np.ndarray | da.Array, chunks: Sequence[int]) -> da.Array:
    if isinstance(data, da.Array):
        return data if _aligned(data.chunks, chunks) else data.rechunk(tuple(chunks))
    return da.from_array(np.asarray(data), chunks=tuple(chunks))


def _downsample(x: da.Array, axes: Sequence[str], *, mean: bool) -> da.Array:
    """Halve y and x: 2×2 block mean (images) or decimation (labels)."""
    iy, ix = axes.index("y"), axes.index("x")
    if not mean:
        sl = [slice(None)] * x.ndim
        ny, nx = (x.shape[iy] // 2) * 2, (x.shape[ix] // 2) * 2
        sl[iy], sl[ix] = slice(0, ny, 2), slice(0, nx, 2)
        return x[tuple(sl)]
    dtype = x.dtype
    out = da.coarsen(np.mean, x.astype(np.float64), {iy: 2, ix: 2}, trim_excess=True)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = da.clip(da.round(out), info.min, info.max)
    return out.astype(dtype)


def _create_level(
    group: zarr.Group,
    name: str,
    shape: Sequence[int],
    dtype: np.dtype,
    chunks: Sequence[int],
    axes: Sequence[str],
) -> zarr.Array:
    chunks = tuple(max(1, min(c, n)) for c, n in zip(chunks, shape, strict=True))
    return group.create_array(
        name,
        shape=tuple(shape),
        dtype=dtype,
        chunks=chunks,
        compressors=_COMPRESSOR,
        fill_value=0,
        dimension_names=tuple(axes),
    )


def _write_pyramid(
    group: zarr.Group,
    data: np.ndarray | da.Array,
    axes: Sequence[str],
    chunks: Sequence[int],
    n_levels: int,
    *,
    mean: bool,
) -> None:
    """Write level 0 from ``data`` and each further level from the one just written."""
    src: np.ndarray | da.Array = data
    for level in range(n_levels):
        arr = _create_level(group, str(level), src.shape, src.dtype, chunks, axes)
        if isinstance(src, np.ndarray):
            arr[...] = src  # in-memory data: zarr writes the chunks itself
        else:
            # lock=False is safe: dask chunks are aligned to zarr chunks (no shared chunk)
            da.store(_as_dask(src, arr.chunks), arr, lock=False, compute=True)
        if level + 1 < n_levels:
            src = _downsample(da.from_zarr(arr), axes, mean=mean)


def _as_label(mask: np.ndarray | da.Array) -> np.ndarray | da.Array:
    if isinstance(mask, da.Array):
        return mask.astype(np.uint8)
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("label values must lie in 0..255")
        mask = mask.astype(np.uint8)
    return mask


# --------------------------------------------------------------------------- write


def write_image(
    data: np.ndarray | da.Array,
    *,
    store: str,
    path: str,
    axes: Sequence[str],
    spacing: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[Sequence[float]] | None = None,
    attrs: Mapping[str, Any] | None = None,
    labels: Mapping[str, np.ndarray | da.Array] | None = None,
    chunks: Sequence[int] | None = None,
    levels: int | None = None,
) -> str:
    """Write one series as an NGFF 0.5 multiscale image, atomically and idempotently.

    When ``data`` is a dask array this is where it is computed (``da.store`` into the
    zarr arrays, on whatever scheduler is active), chunk by chunk.

    Parameters
    ----------
    data
        The voxels, in ``axes`` order.  Booleans are stored as uint8.
    store
        Store root: a local path or an fsspec URL.
    path
        Group path under the root, e.g. ``"images/<key>"``.
    axes
        Axis names, ordered ``t, c, z, y, x`` (a subset ending in ``y, x``).
    spacing
        One spacing (mm) per spatial axis (``z``, ``y``, ``x`` that are present).
    origin
        LPS position (mm) of voxel 0.
    direction
        3×3 matrix, rows = LPS unit vectors of ``z, y, x``; default axis-aligned.
    attrs
        Extra JSON-able attributes (modality, rescale, source hashes …), stored under
        the group attribute ``"medpipe"`` together with the geometry.
    labels
        ``name -> mask`` on the spatial grid (``data``'s shape without ``t``/``c``),
        stored as uint8 NGFF labels.
    chunks
        Zarr chunk shape (default :func:`default_chunks`).  No sharding is used.
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
    if not isinstance(data, da.Array):
        data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"unsupported dtype {data.dtype}")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    axes = _validate_axes(axes, data.ndim)
    spatial = tuple(a for a in axes if a in _SPATIAL)
    if len(spacing) != len(spatial):
        raise ValueError(f"spacing {tuple(spacing)} needs one entry per spatial axis {spatial}")
    if any(not (float(s) > 0 and math.isfinite(float(s))) for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {tuple(spacing)}")
    direction = identity_direction() if direction is None else direction
    dmat = np.asarray(direction, dtype=float)
    omat = np.asarray(origin, dtype=float)
    if dmat.shape != (3, 3) or omat.shape != (3,):
        raise ValueError("origin must have 3 entries and direction must be 3×3")
    chunks = tuple(
        default_chunks(data.shape, axes, itemsize=data.dtype.itemsize)
        if chunks is None
        else chunks
    )
    if len(chunks) != data.ndim:
        raise ValueError(f"chunks {chunks} do not match the data's {data.ndim} dimensions")
    n_levels = _n_levels(data.shape) if levels is None else int(levels)
    if n_levels < 1 or min(data.shape[-2:]) < 2 ** (n_levels - 1):
        raise ValueError(f"cannot make {n_levels} levels from a {data.shape[-2:]} plane")
    spatial_shape = tuple(n for n, a in zip(data.shape, axes, strict=True) if a in _SPATIAL)
    labels = dict(labels or {})
    for name, mask in labels.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid label name {name!r}")
        if tuple(mask.shape) != spatial_shape:
            raise ValueError(f"label {name!r} shape {mask.shape} != spatial shape {spatial_shape}")

    translation0 = _translation0(axes, omat, dmat)
    meta = _jsonable(dict(attrs or {}))
    meta.update(
        {
            "axes": list(axes),
            "spacing": [float(s) for s in spacing],
            "origin": [float(v) for v in omat],
            "direction": [[float(v) for v in row] for row in dmat],
            "shape": [int(n) for n in data.shape],
            "dtype": str(data.dtype),
            "levels": n_levels,
            "labels": sorted(labels),
            "medpipe_version": __version__,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "complete": False,
        }
    )
    name = posixpath.basename(path.strip("/"))
    ome = {
        "version": NGFF_VERSION,
        "multiscales": [_multiscale(name, axes, spacing, translation0, n_levels, centred=True)],
    }

    fs, root = store_root(store)
    target = _join(root, path)
    parent = posixpath.dirname(target)
    tmp = posixpath.join(parent, f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex}")
    try:
        _ensure_parent_groups(fs, root, path)
        zstore = _zarr_store(fs, tmp)
        group = zarr.create_group(
            zstore, zarr_format=3, attributes={"ome": ome, "medpipe": meta}, overwrite=True
        )
        _write_pyramid(group, data, axes, chunks, n_levels, mean=True)
        if labels:
            _write_labels(
                group,
                labels,
                spatial,
                spacing,
                translation0[-len(spatial) :],
                chunks,
                axes,
                n_levels,
            )
        if _is_local(fs):
            _set_complete(fs, tmp, True)
            _replace_local(tmp, target, parent, name)
        else:
            _replace_remote(fs, tmp, target)
            _set_complete(fs, target, True)
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
    spatial: Sequence[str],
    spacing: Sequence[float],
    translation0: Sequence[float],
    chunks: Sequence[int],
    axes: Sequence[str],
    n_levels: int,
) -> None:
    names = sorted(labels)
    lgroup = group.create_group(
        "labels", attributes={"ome": {"version": NGFF_VERSION, "labels": names}}
    )
    lchunks = tuple(c for c, a in zip(chunks, axes, strict=True) if a in _SPATIAL)
    for i, name in enumerate(names):
        colors = [{"label-value": 1, "rgba": _LABEL_COLORS[i % len(_LABEL_COLORS)]}]
        ome = {
            "version": NGFF_VERSION,
            "image-label": {"colors": colors, "source": {"image": "../../"}},
            "multiscales": [
                _multiscale(name, spatial, spacing, translation0, n_levels, centred=False)
            ],
        }
        g = lgroup.create_group(name, attributes={"ome": ome})
        _write_pyramid(g, _as_label(labels[name]), spatial, lchunks, n_levels, mean=False)


def _set_complete(fs: fsspec.AbstractFileSystem, full: str, value: bool) -> None:
    meta = _read_group_json(fs, full)
    if meta is None:
        raise StoreError(f"no group metadata at {full}")
    attrs = meta.get("attributes", {})
    attrs.setdefault("medpipe", {})["complete"] = value
    meta["attributes"] = attrs
    _write_group_json(fs, full, attrs)


def _replace_local(tmp: str, target: str, parent: str, name: str) -> None:
    old = None
    if os.path.lexists(target):
        old = posixpath.join(parent, f"{_TMP_PREFIX}old-{name}-{uuid.uuid4().hex}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _replace_remote(fs: fsspec.AbstractFileSystem, tmp: str, target: str) -> None:
    # object stores: mv is copy + delete.  Unmark the old series first so that a crash
    # while it is deleted never leaves a complete-looking mixture behind.
    if fs.exists(target):
        if _read_group_json(fs, target) is not None:
            _set_complete(fs, target, False)
        fs.rm(target, recursive=True)
    fs.mv(tmp, target, recursive=True)


@contextlib.contextmanager
def atomic_group(store: str, path: str) -> Iterator[str]:
    """Write a whole group at a temporary sibling, then move it into ``path``.

    For writers other than :func:`write_image` (an xarray ``Dataset.to_zarr``, a model
    folder…).  Nothing is visible at ``path`` until the block finishes without error;
    an existing group is replaced only then.

    Parameters
    ----------
    store
        Store URL or path.
    path
        Group path inside the store.

    Yields
    ------
    str
        The temporary location (a URL or local path) to write the group to.
    """
    fs, root = store_root(store)
    target = _join(root, path)
    parent = posixpath.dirname(target)
    name = posixpath.basename(target)
    tmp = posixpath.join(parent, f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex}")
    _ensure_parent_groups(fs, root, path)
    try:
        yield fs.unstrip_protocol(tmp) if not _is_local(fs) else tmp
        if _is_local(fs):
            _replace_local(tmp, target, parent, name)
        else:
            _replace_remote(fs, tmp, target)
    except BaseException:
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm(tmp, recursive=True)
        raise


_LOCKS = "locks"


def _lock_holder_alive(info: Mapping[str, Any]) -> bool:
    """False only when the holder is known dead (same host, no such process)."""
    import socket

    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def store_lock(store: str, name: str, *, owner: str) -> Iterator[dict[str, Any]]:
    """Hold the store's ``name`` write lock for the duration of the block.

    Two runs that both write the store (two nightly runs, say) must never overlap.
    The lock is a file ``locks/<name>.lock`` created exclusively; it records the owner,
    host and pid.  A lock whose holder died on this host (a crash, SIGKILL) is taken
    over, so a rerun after a crash is never blocked.  The lock is re-entrant within one
    process (a flow holding it may call subflows that take it too).

    Parameters
    ----------
    store
        Store URL or path.
    name
        Lock name (e.g. ``"nightly"``).
    owner
        Who takes it (a run id), recorded for the error message of the next taker.

    Yields
    ------
    dict
        The lock record.

    Raises
    ------
    StoreLockedError
        Another live run holds the lock.

    Notes
    -----
    On object stores, exclusive creation is not atomic; run one scheduler per store
    there, or use a Prefect concurrency limit (see ``deploy/README.md``).
    """
    import socket

    fs, root = store_root(store)
    base = _join(root, _LOCKS)
    fs.makedirs(base, exist_ok=True)
    path = f"{base}/{name}.lock"
    info = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    payload = json.dumps(info).encode()
    for _ in range(2):
        try:
            if _is_local(fs):
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
            else:
                if fs.exists(path):
                    raise FileExistsError(path)
                fs.pipe_file(path, payload)
            break
        except FileExistsError:
            try:
                held = json.loads(fs.cat_file(path))
            except (FileNotFoundError, ValueError):
                held = {}
            if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
                # re-entered by the same process (a flow and its subflows): already ours
                yield held
                return
            if held and _lock_holder_alive(held):
                raise StoreLockedError(
                    f"store {store!r} is locked by run {held.get('owner')} (pid "
                    f"{held.get('pid')} on {held.get('host')}, since {held.get('since')}); "
                    "wait for it to finish"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)  # the holder is gone: take the lock over
    else:  # pragma: no cover - lost a race twice
        raise StoreLockedError(f"store {store!r}: could not take the {name} lock")
    try:
        yield info
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


# --------------------------------------------------------------------------- read


def read_attrs(store: str, path: str) -> dict[str, Any]:
    """All group attributes of ``path`` (``"ome"``, ``"medpipe"`` …), complete or not.

    Raises
    ------
    SeriesNotFoundError
        No group at ``path``.
    """
    fs, root = store_root(store)
    meta = _read_group_json(fs, _join(root, path))
    if meta is None:
        raise SeriesNotFoundError(f"no group {path!r} in store {store!r}")
    return dict(meta.get("attributes", {}))


def exists(store: str, path: str) -> bool:
    """True when ``path`` holds a completely written series (its ``complete`` marker)."""
    try:
        attrs = read_attrs(store, path)
    except SeriesNotFoundError:
        return False
    return bool(attrs.get("medpipe", {}).get("complete", False))


def _open_multiscale(
    fs: fsspec.AbstractFileSystem, full: str, level: int, *, extra_attrs: Mapping[str, Any]
) -> xr.DataArray:
    meta = _read_group_json(fs, full)
    if meta is None:
        raise SeriesNotFoundError(f"no group at {full}")
    ms = meta["attributes"]["ome"]["multiscales"][0]
    axes = [a["name"] for a in ms["axes"]]
    datasets = ms["datasets"]
    if not 0 <= level < len(datasets):
        raise SeriesNotFoundError(f"level {level} not in 0..{len(datasets) - 1} at {full}")

    def transforms(ds: Mapping[str, Any]) -> tuple[list[float], list[float]]:
        scale, trans = [1.0] * len(axes), [0.0] * len(axes)
        for t in ds["coordinateTransformations"]:
            if t["type"] == "scale":
                scale = [float(v) for v in t["scale"]]
            elif t["type"] == "translation":
                trans = [float(v) for v in t["translation"]]
        return scale, trans

    scale, trans = transforms(datasets[level])
    _, trans0 = transforms(datasets[0])
    arr = zarr.open_array(
        _zarr_store(fs, full, read_only=True), path=datasets[level]["path"], mode="r"
    )
    data = da.from_zarr(arr)
    coords = {}
    spacing = []
    for i, a in enumerate(axes):
        if a in _SPATIAL:
            coords[a] = (trans[i] - trans0[i]) + np.arange(data.shape[i]) * scale[i]
            spacing.append(scale[i])
    attrs = dict(extra_attrs)
    attrs.update({"spacing": spacing, "level": level})
    return xr.DataArray(data, dims=axes, coords=coords, attrs=attrs)


def _complete_meta(fs: fsspec.AbstractFileSystem, root: str, store: str, path: str) -> dict:
    meta = _read_group_json(fs, _join(root, path))
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
    out = _open_multiscale(fs, _join(root, path), level, extra_attrs=medpipe)
    out.name = posixpath.basename(path.strip("/"))
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
    lroot = posixpath.join(_join(root, path), "labels")
    lmeta = _read_group_json(fs, lroot)
    if lmeta is None:
        return {}
    geometry = {k: medpipe[k] for k in ("origin", "direction") if k in medpipe}
    out = {}
    for name in lmeta["attributes"]["ome"].get("labels", []):
        arr = _open_multiscale(fs, posixpath.join(lroot, name), level, extra_attrs=geometry)
        arr.name = name
        out[name] = arr
    return out


def subgroups(store: str, parent: str) -> list[str]:
    """Paths (``parent/<name>``) of the folders under ``parent`` (not temporaries), sorted."""
    fs, root = store_root(store)
    full = _join(root, parent)
    try:
        entries = fs.ls(full, detail=True)
    except (FileNotFoundError, OSError):
        return []
    out = []
    for e in entries:
        name = posixpath.basename(e["name"].rstrip("/"))
        if e.get("type") != "directory" or name.startswith("."):
            continue
        out.append(posixpath.join(parent.strip("/"), name) if parent.strip("/") else name)
    return sorted(out)


def list_groups(store: str, parent: str) -> list[str]:
    """Paths (``parent/<name>``) of the completely written series under ``parent``, sorted."""
    return [rel for rel in subgroups(store, parent) if exists(store, rel)]


def remove(store: str, path: str) -> None:
    """Delete a series (no error when it is absent).

    Locally the group is first renamed to a temporary name, so it disappears at once.
    """
    fs, root = store_root(store)
    target = _join(root, path)
    if not fs.exists(target):
        return
    if _is_local(fs):
        parent, name = posixpath.split(target)
        doomed = posixpath.join(parent, f"{_TMP_PREFIX}del-{name}-{uuid.uuid4().hex}")
        os.rename(target, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        if _read_group_json(fs, target) is not None:
            _set_complete(fs, target, False)
        fs.rm(target, recursive=True)


def clean_temporaries(store: str, parent: str, *, min_age_s: float = 0.0) -> list[str]:
    """Delete the ``.tmp-*`` leftovers of crashed or interrupted writes under ``parent``.

    Call it when no writer is running (e.g. at the start of a run under the store lock),
    or pass ``min_age_s`` larger than the longest write.

    Parameters
    ----------
    store
        Store root.
    parent
        Folder whose temporaries are cleaned, e.g. ``"images"``.
    min_age_s
        Only remove temporaries whose modification time is at least this old (where the
        file system reports one).

    Returns
    -------
    list of str
        Names removed.
    """
    fs, root = store_root(store)
    full = _join(root, parent)
    try:
        entries = fs.ls(full, detail=True)
    except (FileNotFoundError, OSError):
        return []
    now = time.time()
    removed = []
    for e in entries:
        name = posixpath.basename(e["name"].rstrip("/"))
        if not name.startswith(_TMP_PREFIX):
            continue
        mtime = e.get("mtime") or e.get("created")
        if min_age_s > 0 and isinstance(mtime, (int, float)) and now - mtime < min_age_s:
            continue
        fs.rm(e["name"], recursive=True)
        removed.append(name)
    return sorted(removed)
