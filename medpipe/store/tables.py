"""The one table API: xarray Datasets with a ``sample`` dimension, stored as Zarr v3 groups.

Feature tables (``features/…``) and score tables (``scores/…``) are read and written only
through here.

* :func:`write_table` writes a whole table atomically (temporary sibling, then moved).
* :func:`append_samples` adds rows with ``to_zarr(append_dim="sample")``: the chunks that
  hold only existing rows are never rewritten (the last, partial chunk is completed).
* :func:`drop_samples` removes rows by clearing them in the table's live mask (bytes
  written in proportion to the rows dropped); the table is compacted (rewritten
  atomically with its live rows only) when :func:`needs_compaction` says so.
* :func:`open_table` opens one lazily, with its live rows only.

The live mask :data:`LIVE` is a boolean array along ``sample`` (1 = live), created by the
first :func:`drop_samples`; a table without one has only live rows.  A re-ingested
series' old rows are dropped this way and its new rows appended, so a night that
changes 1 % of the rows writes about 1 % of the table (plus the mask's touched chunks
and the completed last chunk), and a sample name may occur on a dead and a live row.

An append is made crash-safe by a commit record: the table group's attribute
:data:`COMMITTED` holds the number of rows that are complete.  The appended rows carry the
old count, and the group's ``zarr.json`` is replaced atomically with the new count only
after they are written.  :func:`open_table` reads that
many rows, so rows of an append that a crash cut short are never seen, and the next
:func:`append_samples` first cuts the arrays back to the committed length.

Every string array is stored with Zarr's variable-length ``string`` data type, which has
a Zarr v3 specification (numpy ``<U`` arrays would become ``fixed_length_utf32``, which
has none).  Arrays along ``sample`` are chunked in blocks of ``rows`` samples (fixed when
the table is created, so appends keep filling whole chunks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr
import zarr

from medpipe.errors import SeriesNotFoundError
from medpipe.store.atomic import atomic_group
from medpipe.store.fs import (
    has_group,
    join,
    read_group_json,
    store_root,
    write_group_json,
    zarr_store,
)

__all__ = [
    "SAMPLE",
    "STRING_DTYPE",
    "DEFAULT_ROWS",
    "has_table",
    "open_table",
    "write_table",
    "append_samples",
    "drop_samples",
    "string_values",
    "COMMITTED",
    "LIVE",
    "MAX_DEAD_FRACTION",
    "needs_compaction",
    "compact_table",
]

#: The row dimension of every table.
SAMPLE = "sample"
#: The Zarr v3 data type of every stored string array.
STRING_DTYPE = "string"
#: Default samples per chunk along ``sample``.
DEFAULT_ROWS = 4096
#: The group attribute holding a table's committed row count.
COMMITTED = "medpipe_committed_rows"
#: The live mask: a boolean array along ``sample`` (absent: every row is live).
LIVE = "medpipe_live"
#: A table is compacted when more than this fraction of its stored rows are dead.
MAX_DEAD_FRACTION = 0.2


def needs_compaction(dead: int, total: int, *, max_dead: float = MAX_DEAD_FRACTION) -> bool:
    """Whether a table with ``dead`` of its ``total`` stored rows dropped is rewritten.

    Parameters
    ----------
    dead
        Rows cleared in the live mask.
    total
        Rows stored (live and dead).
    max_dead
        The dead fraction above which the table is compacted.

    Returns
    -------
    bool
        True when ``dead / total > max_dead`` (a table of dead rows only is always
        compacted: it is rewritten empty).
    """
    if total <= 0 or dead <= 0:
        return False
    return dead == total or dead / total > max_dead


def _committed_rows(store: str, path: str) -> int | None:
    """The committed row count of a table (``None`` for a table written without one)."""
    fs, root = store_root(store)
    meta = read_group_json(fs, join(root, path)) or {}
    rows = meta.get("attributes", {}).get(COMMITTED)
    return None if rows is None else int(rows)


def _commit(store: str, path: str, rows: int) -> None:
    """Record ``rows`` as complete: the group's ``zarr.json`` replaced atomically."""
    fs, root = store_root(store)
    full = join(root, path)
    attrs = (read_group_json(fs, full) or {}).get("attributes", {})
    write_group_json(fs, full, {**attrs, COMMITTED: int(rows)})


def has_table(store: str, path: str) -> bool:
    """True when a table (any Zarr group) exists at ``path``."""
    return has_group(store, path)


def open_table(store: str, path: str) -> xr.Dataset:
    """Open a stored table lazily (dask-backed).

    Raises
    ------
    SeriesNotFoundError
        No table at ``path``.
    """
    if not has_table(store, path):
        raise SeriesNotFoundError(f"no table {path!r} in store {store!r}")
    table = _open_stored(store, path)
    if LIVE not in table.variables:
        return table
    live = np.asarray(table[LIVE].values, dtype=bool)
    table = table.drop_vars(LIVE)
    if live.all():
        return table
    return table.isel({SAMPLE: np.flatnonzero(live)})


def _open_stored(store: str, path: str) -> xr.Dataset:
    """Every committed row, dead ones included, with the live mask as a variable."""
    fs, root = store_root(store)
    table = xr.open_zarr(fs.get_mapper(join(root, path)), consolidated=False)
    rows = table.attrs.pop(COMMITTED, None)
    if rows is not None and table.sizes.get(SAMPLE, 0) > int(rows):  # an append cut short
        table = table.isel({SAMPLE: slice(0, int(rows))})
    return table


def string_values(values: Any) -> np.ndarray:
    """Plain ``str`` values (object array) of a string array (object, ``<U`` or StringDType)."""
    arr = np.asarray(getattr(values, "values", values))
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = [str(v) for v in arr.ravel().tolist()]
    return out


def _spec_strings(table: xr.Dataset) -> xr.Dataset:
    """Every string variable as an object array of ``str`` (stored as Zarr ``string``)."""
    fixed = {
        name: (var.dims, string_values(var), var.attrs)
        for name, var in table.variables.items()
        if var.dtype.kind in "OUT"
    }
    coords = {k: v for k, v in fixed.items() if k in table.coords}
    data = {k: v for k, v in fixed.items() if k not in table.coords}
    return table.assign_coords(coords).assign(data)


def _encoding(table: xr.Dataset, rows: int) -> dict[str, dict[str, Any]]:
    enc = {}
    for name, var in table.variables.items():
        if SAMPLE in var.dims:
            enc[name] = {
                "chunks": tuple(
                    rows if d == SAMPLE else max(1, n)
                    for d, n in zip(var.dims, var.shape, strict=True)
                )
            }
    return enc


def write_table(table: xr.Dataset, *, store: str, path: str, rows: int = DEFAULT_ROWS) -> str:
    """Write (or replace) a whole table atomically.

    Dask-backed variables are computed in the write, on the current Dask scheduler.

    Parameters
    ----------
    table
        A Dataset with a ``sample`` dimension.
    store
        Store URL or path.
    path
        Group path, e.g. ``features/<hash>``.
    rows
        Samples per chunk along ``sample``.

    Returns
    -------
    str
        ``path``.
    """
    table = _spec_strings(table.drop_encoding())
    table.attrs[COMMITTED] = int(table.sizes.get(SAMPLE, 0))
    table = table.assign(
        {
            name: var.chunk({d: rows if d == SAMPLE else -1 for d in var.dims})
            for name, var in table.data_vars.items()
            if SAMPLE in var.dims and var.chunks is not None
        }
    )
    with atomic_group(store, path) as tmp:
        table.to_zarr(
            tmp, mode="w", consolidated=False, zarr_format=3, encoding=_encoding(table, rows)
        )
    return path


def _sample_arrays(group: zarr.Group) -> dict[str, tuple[int, ...]]:
    out = {}
    for name, arr in group.arrays():
        if SAMPLE in (arr.metadata.dimension_names or ()):
            out[name] = tuple(arr.shape)
    return out


def _cut_to(group: zarr.Group, rows: int) -> dict[str, tuple[int, ...]]:
    """Cut every ``sample`` array back to ``rows`` (what a crashed append left); shapes."""
    shapes = {}
    for name, shape in _sample_arrays(group).items():
        axis = list(group[name].metadata.dimension_names).index(SAMPLE)
        if shape[axis] != rows:
            shape = shape[:axis] + (rows,) + shape[axis + 1:]
            group[name].resize(shape)
        shapes[name] = shape
    return shapes


def append_samples(
    table: xr.Dataset, *, store: str, path: str, rows: int = DEFAULT_ROWS
) -> int:
    """Append ``table``'s samples to the stored table (created when absent).

    The new rows are computed first (on the current Dask scheduler), then appended with
    ``to_zarr(append_dim="sample")``: existing rows are not rewritten, except that the
    stored table's last, partially filled chunk is completed.  Should the append fail,
    the arrays are cut back to their previous length.  Variables without a ``sample``
    dimension (the ``feature`` coord) must equal the stored ones and are not rewritten.

    Parameters
    ----------
    table
        New samples, with the stored table's variables and attributes.
    store
        Store URL or path.
    path
        Group path of the table.
    rows
        Samples per chunk, used only when the table is created.

    Returns
    -------
    int
        The number of samples appended.
    """
    n = int(table.sizes.get(SAMPLE, 0))
    if not has_table(store, path):
        write_table(table, store=store, path=path, rows=rows)
        return n
    if n == 0:
        return 0
    table = _spec_strings(table.drop_encoding()).compute()
    table = table.drop_vars([k for k, v in table.variables.items() if SAMPLE not in v.dims])
    fs, root = store_root(store)
    full = join(root, path)
    zstore = zarr_store(fs, full)
    group = zarr.open_group(zstore, mode="r+", zarr_format=3)
    committed = _committed_rows(store, path)
    if committed is None:  # a table from before commit records: its sample coord decides
        committed = int(group[SAMPLE].shape[0])
    before = _cut_to(group, committed)
    if LIVE in before:  # the new rows are live
        table[LIVE] = (SAMPLE, np.ones(n, dtype=bool))
    table.attrs[COMMITTED] = committed  # the rows below are not committed until _commit
    try:
        table.to_zarr(zstore, mode="a", append_dim=SAMPLE, consolidated=False, zarr_format=3)
    except BaseException:
        for name, shape in before.items():
            group[name].resize(shape)
        raise
    _commit(store, path, committed + n)
    return n


def drop_samples(store: str, path: str, samples: Iterable[str]) -> int:
    """Remove the live rows whose ``sample`` coord is in ``samples``.

    The rows are cleared in the live mask :data:`LIVE` (created, all live, on the first
    drop): only the mask's chunks that hold a dropped row are rewritten, so the bytes
    written grow with the rows dropped, not with the table.  When the dead rows then
    exceed :data:`MAX_DEAD_FRACTION` of the table (:func:`needs_compaction`) the live
    rows are rewritten atomically instead (:func:`compact_table`).

    Parameters
    ----------
    store
        Store URL or path.
    path
        Group path of the table.
    samples
        Sample names to drop (absent ones are ignored).

    Returns
    -------
    int
        The number of rows dropped (0: nothing was written).
    """
    stored = _open_stored(store, path)
    names = string_values(stored[SAMPLE])
    live = (
        np.asarray(stored[LIVE].values, dtype=bool)
        if LIVE in stored.variables
        else np.ones(len(names), dtype=bool)
    )
    drop = np.isin(names, np.array(list(samples), dtype=object)) & live
    if not drop.any():
        return 0
    live = live & ~drop
    if needs_compaction(int((~live).sum()), len(live)):
        _rewrite(stored, live, store=store, path=path)
        return int(drop.sum())
    fs, root = store_root(store)
    group = zarr.open_group(zarr_store(fs, join(root, path)), mode="r+", zarr_format=3)
    _cut_to(group, len(live))  # what a crashed append left beyond the committed rows
    if LIVE not in group:
        mask = group.create_array(
            LIVE,
            shape=(len(live),),
            dtype=bool,
            chunks=(_sample_chunk(stored),),
            fill_value=True,
            dimension_names=(SAMPLE,),
        )
    else:
        mask = group[LIVE]
    # Only the chunks holding a dropped row are written (all-live chunks stay absent:
    # the fill value is live).
    chunk = int(mask.chunks[0])
    for c in np.unique(np.flatnonzero(drop) // chunk):
        lo, hi = int(c) * chunk, min(len(live), (int(c) + 1) * chunk)
        mask[lo:hi] = live[lo:hi]
    return int(drop.sum())


def _sample_chunk(table: xr.Dataset) -> int:
    """The stored table's rows per chunk along ``sample``."""
    first = next(
        (v for v in table.variables.values() if SAMPLE in v.dims and "chunks" in v.encoding),
        None,
    )
    if first is None:
        return DEFAULT_ROWS
    return int(first.encoding["chunks"][first.dims.index(SAMPLE)])


def _rewrite(stored: xr.Dataset, live: np.ndarray, *, store: str, path: str) -> None:
    """Write the live rows of ``stored`` (the rewrite path) atomically, without a mask."""
    rows = _sample_chunk(stored)
    kept = stored.drop_vars(LIVE, errors="ignore").isel({SAMPLE: np.flatnonzero(live)}).load()
    write_table(kept, store=store, path=path, rows=rows)


def compact_table(store: str, path: str) -> int:
    """Rewrite a table with its live rows only (atomically); returns the dead rows removed.

    Parameters
    ----------
    store
        Store URL or path.
    path
        Group path of the table.

    Returns
    -------
    int
        Dead rows removed (0: the table had none and was not written).
    """
    stored = _open_stored(store, path)
    if LIVE not in stored.variables:
        return 0
    live = np.asarray(stored[LIVE].values, dtype=bool)
    if live.all():
        return 0
    _rewrite(stored, live, store=store, path=path)
    return int((~live).sum())
