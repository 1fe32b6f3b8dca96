"""The outputs index: which series has which output, made from which input.

``outputs/`` (beside ``catalog/``) is an append-only log of Parquet parts
(:mod:`medpipe.store.parts`).  Every writer appends a part after its write is complete:

=======================  ==========================  ===========================
output (group)           one row per                 ``input`` (what it was made from)
=======================  ==========================  ===========================
``images``               series (ingest)             digest of its source files' hashes
``preprocessed/<h>``     series (preprocess)         the source image's version
``features/<h>[-<p>]``   sample (features)           the source image's version
``scores/<name>/<v>``    sample (score)              the feature row's version
=======================  ==========================  ===========================

``version`` is the output's own version (:func:`medpipe.store.image_version` of an
image; a table row's version is its input).  A row's ``status`` is ``written``,
``dropped`` (a table row removed) or ``reset`` (a whole table rewritten: the output's
earlier rows no longer count).  The current view (:func:`read_index`) keeps the last row
of each ``(output, series, sample)``.

"What is pending?" is then a set difference on the index (:func:`stale`) that reads no
image ``zarr.json``: the series whose current source version differs from the input of
their output.  Because a row is appended only after its write, a crash can leave the
index behind the store (the work is done again, idempotently), never ahead of it.

The index is trusted only once it has a snapshot: a fresh store gets an empty one on
its first ingest (:func:`ensure_index`), an existing store from ``medpipe reindex``
(:func:`reindex`, which rebuilds the index from the store).  Without one, the stages
fall back to reading the store's metadata, as before.  :func:`compact` folds the parts
into one snapshot (crash-safe, under the store lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from medpipe.store import layout, parts
from medpipe.store.fs import list_groups, read_attrs, store_root, subgroups
from medpipe.store.images import image_version
from medpipe.store.lock import WRITE_LOCK, store_lock
from medpipe.store.tables import has_table, open_table, string_values

__all__ = [
    "COLUMNS",
    "KEY",
    "WRITTEN",
    "DROPPED",
    "RESET",
    "UNSUPPORTED",
    "has_index",
    "ensure_index",
    "image_row",
    "table_rows",
    "record",
    "record_images",
    "record_unsupported",
    "record_table",
    "read_index",
    "versions",
    "inputs",
    "stale",
    "rebuild",
    "reindex",
    "compact",
    "same_index",
]

#: Columns of the index, in order.
COLUMNS = ("output", "series", "sample", "version", "input", "axes", "status", "run_id",
           "written_at")
#: The columns naming one entry: the last row of each is its current state.
KEY = ("output", "series", "sample")
#: ``status`` of an output written.
WRITTEN = "written"
#: ``status`` of a table row removed.
DROPPED = "dropped"
#: ``status`` of a whole table rewritten (``series`` and ``sample`` empty).
RESET = "reset"
#: ``status`` of a series its stage cannot process (a colour image for preprocessing):
#: not pending again until its input changes, and no output (its ``version`` is empty).
UNSUPPORTED = "unsupported"
#: The axes of the images preprocessing takes (:func:`medpipe.preprocess.apply.preprocess_series`).
_PREPROCESSABLE = "z,y,x"
#: Stores this process has seen indexed (ingest asks before every series).
_INDEXED: set[str] = set()
#: The columns compared by :func:`same_index`.
_STATE = ("output", "series", "sample", "version", "input", "axes")


def has_index(store: str) -> bool:
    """True when the store's outputs index can be trusted (it has a snapshot)."""
    return parts.has_snapshot(store, layout.OUTPUTS)


def ensure_index(store: str) -> bool:
    """Start an empty index on a store that has no output yet; is the index usable?

    Ingest calls it before writing a series, so a new store is indexed from its first
    write on.  A store with outputs but no index is left alone (``medpipe reindex``
    builds it).  Concurrent callers are harmless: an empty snapshot replaces no part.

    Returns
    -------
    bool
        :func:`has_index` after the call.
    """
    if store in _INDEXED:  # a snapshot is never removed before its successor is in place
        return True
    if has_index(store):
        _INDEXED.add(store)
        return True
    fs, root = store_root(store)
    groups = (layout.IMAGES, layout.PREPROCESSED, layout.FEATURES, layout.SCORES)
    if any(fs.exists(f"{root}/{g}") for g in groups):
        return False
    parts.write_snapshot(store, layout.OUTPUTS, _frame([]), replaces=[])
    _INDEXED.add(store)
    return True


def _source_digest(hashes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]


def image_row(output: str, key: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    """The index row of the image ``output/key`` from its ``"medpipe"`` attributes."""
    pre = attrs.get("preprocess")
    made_from = (
        str(pre.get("source_version", "")) if isinstance(pre, Mapping)
        else _source_digest([str(h) for h in attrs.get("source_hashes") or ()])
    )
    return {"output": output, "series": key, "sample": "", "version": image_version(attrs),
            "input": made_from, "axes": ",".join(attrs.get("axes") or ()), "status": WRITTEN}


def table_rows(output: str, table: xr.Dataset, *, input_coord: str) -> list[dict[str, str]]:
    """The index rows of a table's samples; ``input_coord`` holds what each was made from."""
    n = int(table.sizes.get("sample", 0))
    if n == 0:
        return []
    samples = string_values(table["sample"])
    series = string_values(table["series"]) if "series" in table.coords else samples
    made = (string_values(table[input_coord]) if input_coord in table.coords
            else np.full(n, "", dtype=object))
    return [
        {"output": output, "series": k, "sample": s, "version": v, "input": v, "axes": "",
         "status": WRITTEN}
        for s, k, v in zip(samples.tolist(), series.tolist(), made.tolist(), strict=True)
    ]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _frame(rows: Iterable[Mapping[str, Any]], *, run_id: str = "") -> pd.DataFrame:
    """Index rows as a frame of strings with :data:`COLUMNS` (missing values empty)."""
    rows = list(rows)
    now = _now()
    defaults = {"run_id": run_id, "written_at": now}
    data = {
        c: [str(r.get(c) if r.get(c) is not None else defaults.get(c, "")) or defaults.get(c, "")
            for r in rows]
        for c in COLUMNS
    }
    return pd.DataFrame(data, columns=list(COLUMNS)).astype(str)


def record(store: str, rows: Iterable[Mapping[str, Any]], *, run_id: str = "") -> int:
    """Append rows to the index as one new part (call it after the write is complete).

    Returns
    -------
    int
        The number of rows appended.
    """
    frame = _frame(rows, run_id=run_id)
    parts.append_part(store, layout.OUTPUTS, frame, run_id=run_id or "run")
    return len(frame)


def record_images(store: str, output: str, keys: Iterable[str], *, run_id: str = "") -> int:
    """Record the images ``output/<key>`` just written (reads their ``zarr.json`` only)."""
    rows = [
        image_row(output, k, read_attrs(store, layout.source_image(output, k)).get("medpipe", {}))
        for k in keys
    ]
    return record(store, rows, run_id=run_id)


def record_unsupported(
    store: str, output: str, keys: Iterable[str], *, source: str, run_id: str = ""
) -> int:
    """Record that the series ``keys`` of ``source`` cannot have the output ``output``.

    They are not pending for it again until their source image changes.
    """
    rows = []
    for k in keys:
        attrs = read_attrs(store, layout.source_image(source, k)).get("medpipe", {})
        rows.append({"output": output, "series": k, "sample": "", "version": "",
                     "input": image_version(attrs), "axes": ",".join(attrs.get("axes") or ()),
                     "status": UNSUPPORTED})
    return record(store, rows, run_id=run_id)


def record_table(
    store: str,
    output: str,
    table: xr.Dataset | None = None,
    *,
    input_coord: str,
    replaced: bool = False,
    dropped: Mapping[str, str] | None = None,
    run_id: str = "",
) -> int:
    """Record a table write: rows dropped (sample → series), then the rows written.

    Parameters
    ----------
    store, output
        The store and the table's group.
    table
        The rows written (their coords are read), or ``None``.
    input_coord
        The coord holding each row's input (``version`` of a feature table, ``input``
        of a score table).
    replaced
        The whole table was rewritten with ``table``: earlier rows no longer count.
    dropped
        Samples removed (each with its series key).
    run_id
        The writing run.
    """
    rows: list[dict[str, str]] = []
    if replaced:
        rows.append({"output": output, "series": "", "sample": "", "status": RESET})
    for sample, series in (dropped or {}).items():
        rows.append({"output": output, "series": series, "sample": sample, "status": DROPPED})
    if table is not None:
        rows += table_rows(output, table, input_coord=input_coord)
    return record(store, rows, run_id=run_id)


def _current(rows: pd.DataFrame) -> pd.DataFrame:
    """The current view of index rows (in log order): resets applied, last row per key."""
    if rows.empty:
        return _frame([]).drop(columns=["status", "run_id", "written_at"])
    rows = rows.reset_index(drop=True)
    is_reset = rows["status"] == RESET
    if is_reset.any():
        last = rows.index.to_series()[is_reset].groupby(rows["output"][is_reset]).max()
        cut = rows["output"].map(last).fillna(-1).to_numpy()
        rows = rows[rows.index.to_numpy() > cut]
    rows = rows.drop_duplicates(list(KEY), keep="last")
    rows = rows[rows["status"].isin([WRITTEN, UNSUPPORTED])]
    return rows.drop(columns=["status", "run_id", "written_at"]).reset_index(drop=True)


def _read_current(store: str) -> tuple[pd.DataFrame | None, int]:
    """The current view (``None``: no snapshot) and the number of parts it was read from."""
    snapshot, frames, n = parts.read_log(store, layout.OUTPUTS)
    if snapshot is None:
        return None, n
    logged = []
    if frames:
        logged = [pd.concat(frames, ignore_index=True).sort_values("written_at",
                                                                   kind="stable")]
    return _current(pd.concat([snapshot, *logged], ignore_index=True).astype(str)), n


def read_index(store: str) -> pd.DataFrame | None:
    """The index's current view, or ``None`` when the store has no usable index.

    Returns
    -------
    pandas.DataFrame or None
        One row per current output entry: columns ``output``, ``series``, ``sample``,
        ``version``, ``input``, ``axes`` (strings).
    """
    return _read_current(store)[0]


def versions(index: pd.DataFrame, output: str, *, skip_time: bool = False) -> dict[str, str]:
    """Series key → version of the images of ``output`` (``skip_time``: no ``t`` axis)."""
    rows = index[(index["output"] == output) & (index["sample"] == "") & (index["version"] != "")]
    if skip_time:
        timed = np.array(["t" in a.split(",") for a in rows["axes"]], dtype=bool)
        rows = rows[~timed]
    return dict(zip(rows["series"], rows["version"], strict=True))


def inputs(index: pd.DataFrame, output: str, *, by: str = "series") -> dict[str, str]:
    """``by`` (``series`` or ``sample``) → the input of the entries of ``output``."""
    rows = index[index["output"] == output]
    return dict(zip(rows[by], rows["input"], strict=True))


def stale(current: Mapping[str, str], done: Mapping[str, str]) -> list[str]:
    """Keys of ``current`` whose output is missing or made from another input, sorted."""
    return sorted(k for k, v in current.items() if done.get(k) != v)


def rebuild(store: str) -> pd.DataFrame:
    """The index rows the store's contents imply (reads every output's metadata once).

    Images and preprocessed images from their ``zarr.json``; feature tables from their
    ``version`` coord; score tables from their ``input`` coord (score tables written
    before inputs were recorded are left out: every sample counts as unscored).

    Returns
    -------
    pandas.DataFrame
        Rows with :data:`COLUMNS`.
    """
    rows: list[dict[str, str]] = []

    def images(group: str) -> None:
        for path in list_groups(store, group):
            attrs = read_attrs(store, path).get("medpipe", {})
            rows.append(image_row(group, layout.key_of(path), attrs))

    images(layout.IMAGES)
    # preprocessing takes grey-level (z, y, x) volumes only: the others are unsupported
    others = [r for r in rows if r["axes"] != _PREPROCESSABLE]
    for group in subgroups(store, layout.PREPROCESSED):
        images(group)
        rows += [{**r, "output": group, "version": "", "input": r["version"],
                  "status": UNSUPPORTED} for r in others]
    for group in subgroups(store, layout.FEATURES):
        if has_table(store, group):
            rows += table_rows(group, open_table(store, group), input_coord="version")
    for name in subgroups(store, layout.SCORES):
        for group in subgroups(store, name):
            table = open_table(store, group) if has_table(store, group) else None
            if table is not None and "input" in table.coords:
                rows += table_rows(group, table, input_coord="input")
    return _frame(rows, run_id="reindex")


def reindex(store: str, *, owner: str) -> int:
    """Rebuild the index from the store and make it the index (one atomic snapshot).

    Takes the store's write lock; also hold the models lock
    (:func:`medpipe.models.registry.registry_lock`) so that no score is appended
    meanwhile.  Every part written before is replaced; a crash leaves the old index.

    Returns
    -------
    int
        The number of entries in the rebuilt index.
    """
    with store_lock(store, WRITE_LOCK, owner=owner):
        replaced, _ = parts.list_log(store, layout.OUTPUTS)
        frame = rebuild(store)
        parts.write_snapshot(store, layout.OUTPUTS, frame, replaces=replaced)
    return len(frame)


def compact(store: str, *, owner: str, min_parts: int = 1) -> int:
    """Fold the index's parts into one snapshot of its current view (under the write lock).

    Parameters
    ----------
    store
        Store URL or path.
    owner
        The run taking the lock.
    min_parts
        Only compact when at least this many parts are outside the snapshot.

    Returns
    -------
    int
        The number of parts folded (0: nothing was written).
    """
    with store_lock(store, WRITE_LOCK, owner=owner):
        names, _ = parts.list_log(store, layout.OUTPUTS)
        current, n = _read_current(store)
        if current is None or n < min_parts:
            parts.clean_replaced(store, layout.OUTPUTS)  # what a compaction cut short left
            return 0
        # the parts listed before the read: one appended since stays, read after this
        frame = _frame(current.assign(status=WRITTEN).to_dict("records"), run_id=owner)
        parts.write_snapshot(store, layout.OUTPUTS, frame, replaces=names)
    return n


def same_index(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """True when two sets of index rows have the same current view (order aside)."""

    def view(frame: pd.DataFrame) -> pd.DataFrame:
        cur = frame if "status" not in frame else _current(frame)
        return cur[list(_STATE)].sort_values(list(KEY)).reset_index(drop=True)

    return view(a).equals(view(b))
