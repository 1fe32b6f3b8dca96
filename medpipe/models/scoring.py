"""Score tables: probabilities of a registered model for every sample of a feature table.

``scores/<name>/<version>`` is a table (:mod:`medpipe.store.tables`) that grows by
appending: each run appends the samples not scored yet.  Every row records the input it
scored (coord :data:`INPUT`: the feature row's ``version``, the identity of the image
version its features were computed from), so a series whose image changed is re-scored:
its old rows are dropped and the new ones appended, while every other row keeps its
value.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from medpipe.models import estimators as est
from medpipe.models import multiclass
from medpipe.models import registry as reg
from medpipe.models.common import feature_table, load_ref, strings
from medpipe.models.evaluation import check_compatible
from medpipe.progress import Report, persist_with_progress
from medpipe.store import layout, outputs, tables

__all__ = [
    "SCORES",
    "INPUT",
    "scores_group",
    "open_scores",
    "score_model",
    "unscored_samples",
    "count_unscored",
]

#: Store group of the scores: ``scores/<name>/<version>``.
SCORES = layout.SCORES
#: Samples per chunk of a score table.
_ROWS = 65_536
#: The score table's coord holding the input each row scored (the feature row's version).
INPUT = "input"


def scores_group(name: str, version: str) -> str:
    """``scores/<name>/<version>``."""
    return layout.scores(reg.check_name(name), version)


def open_scores(store: str, group: str) -> xr.Dataset | None:
    """A stored score table (lazily), or ``None``."""
    if not tables.has_table(store, group):
        return None
    return tables.open_table(store, group)


def _inputs(table: xr.Dataset, coord: str) -> np.ndarray:
    """The per-sample input versions of a table (``""`` where it records none)."""
    if coord in table.coords:
        return strings(table[coord])
    return np.full(table.sizes.get("sample", 0), "", dtype=object)


def unscored_samples(scores: xr.Dataset | None, table: xr.Dataset) -> list[int]:
    """Positions of the feature table's samples that have no score of their current input.

    A sample is unscored when the score table has no row for it, or its row scored
    another input (the feature row's ``version`` changed: the series was re-ingested or
    re-preprocessed).  A score table from before inputs were recorded (no
    :data:`INPUT` coord) counts every sample as unscored, so it is re-scored once.
    Only coords are read.

    Parameters
    ----------
    scores
        The stored score table (lazy), or ``None``.
    table
        The feature table (lazy).

    Returns
    -------
    list of int
        Positions along ``sample`` of ``table``, in table order.
    """
    samples = strings(table["sample"])
    current = _inputs(table, "version")
    if scores is None or INPUT not in scores.coords:
        return list(range(len(samples)))
    scored = dict(zip(strings(scores["sample"]), strings(scores[INPUT]), strict=True))
    return [i for i, (s, v) in enumerate(zip(samples, current, strict=True))
            if scored.get(s) != v]


def count_unscored(store: str, group: str, features_group: str) -> int:
    """How many samples of ``features_group`` lack a score of their current input in ``group``.

    A set difference on the outputs index (:mod:`medpipe.store.outputs`) when the store
    has one; else the coords of both tables (:func:`unscored_samples`).

    Parameters
    ----------
    store
        Store URL or path.
    group
        The score table (``scores/<name>/<version>``).
    features_group
        The feature table it scores.

    Returns
    -------
    int
        0 when there is no feature table.
    """
    index = outputs.read_index(store)
    if index is not None:
        return len(outputs.stale(outputs.inputs(index, features_group, by="sample"),
                                 outputs.inputs(index, group, by="sample")))
    if not tables.has_table(store, features_group):
        return 0
    table = tables.open_table(store, features_group)
    return len(unscored_samples(open_scores(store, group), table))


def score_model(
    store: str,
    *,
    model: str,
    features: str | None = None,
    limit: int | None = None,
    progress: Report | None = None,
) -> dict[str, Any]:
    """Score every sample whose current features have no score yet for this model version.

    Probabilities are computed block-wise on the current Dask scheduler (a lazy
    ``map_blocks`` over the feature array, as :class:`~dask_ml.wrappers.ParallelPostFit`
    does) and appended to ``scores/<name>/<version>`` (the rows already there are not
    rewritten): variables ``probability`` (float, NaN where a needed feature is
    missing) and ``predicted`` (0/1, -1 when unscorable), coords ``sample``, ``series``,
    ``series_uid``, ``study``, ``patient`` (Zarr ``string`` arrays) and :data:`INPUT`
    (the feature row's ``version`` that was scored).  A k-class model's table has a
    ``class`` dimension instead (:func:`medpipe.models.multiclass.score_table`).

    A sample whose feature row changed since it was scored (its ``version`` differs from
    the scored :data:`INPUT`) is scored again: its old row is dropped
    (:func:`medpipe.store.drop_samples`) and the new one appended; the other rows keep
    their values.  A score table written before inputs were recorded is re-scored once
    as a whole (its rows of samples no longer in the feature table are kept, with an
    empty input).

    Parameters
    ----------
    store
        Store URL or path.
    model
        ``NAME`` or ``NAME:VERSION``.
    features
        Feature-table group; default the model's.
    limit
        Score at most this many new samples.
    progress
        Reports the samples scored (``score``), block by block as their Dask tasks
        finish.

    Returns
    -------
    dict
        ``group``, ``scored`` (new this run), ``rescored`` (of those, samples whose old
        score was replaced), ``total``.
    """
    fitted, meta = load_ref(store, model)
    group = scores_group(meta["name"], meta["version"])
    table = feature_table(store, features or meta["features_group"])
    check_compatible(meta, table)
    # the scored set is read and the new rows appended under the registry lock, so two
    # concurrent runs never score (and append) the same samples twice
    with reg.registry_lock(store):
        return _append_new(store, group, table, fitted, meta, limit, progress)


def _score_rows(
    table: xr.Dataset, todo: list[int], fitted: Any, meta: dict[str, Any],
    progress: Report | None,
) -> xr.Dataset:
    """The score rows of the samples ``todo`` of ``table`` (computed, with progress)."""
    sub = table.isel(sample=todo).sel(feature=meta["feature_names"])
    prob = est.positive_proba(fitted, sub["features"].data)
    if prob.ndim == 2:  # k > 2 classes: a class dimension (medpipe.models.multiclass)
        new = multiclass.score_table(prob, sub, meta)
        new = new.assign_coords({INPUT: ("sample", _inputs(sub, "version"))})
        return persist_with_progress(new, var="probability", description="score",
                                     report=progress)
    thr = float(meta.get("threshold", 0.5))
    pred = da.where(da.isnan(prob), -1, (prob >= thr).astype(np.int8)).astype(np.int8)
    coords = {
        c: ("sample", strings(sub[c]))
        for c in ("series", "series_uid", "study", "patient")
        if c in sub.coords
    }
    new = xr.Dataset(
        {"probability": ("sample", prob), "predicted": ("sample", pred)},
        coords={"sample": strings(sub["sample"]), **coords,
                INPUT: ("sample", _inputs(sub, "version"))},
        attrs={"model": meta["name"], "version": meta["version"], "threshold": thr,
               "features_group": meta["features_group"]},
    )
    return persist_with_progress(new, var="probability", description="score", report=progress)


def _append_new(
    store: str, group: str, table: xr.Dataset, fitted: Any, meta: dict[str, Any],
    limit: int | None, progress: Report | None = None,
) -> dict[str, Any]:
    old = open_scores(store, group)
    before = 0 if old is None else int(old.sizes.get("sample", 0))
    todo = unscored_samples(old, table)
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return {"group": group, "scored": 0, "rescored": 0, "total": before}
    new = _score_rows(table, todo, fitted, meta, progress)
    names = strings(new["sample"])
    if old is not None and INPUT not in old.coords:  # scored before inputs were recorded
        kept = old.isel(sample=np.flatnonzero(~np.isin(strings(old["sample"]), names))).load()
        kept = kept.assign_coords({INPUT: ("sample", np.full(kept.sizes["sample"], "",
                                                             dtype=object))})
        rows = xr.concat([kept, new], dim="sample", data_vars="all", coords="different",
                         compat="equals", combine_attrs="override")
        tables.write_table(rows, store=store, path=group, rows=_ROWS)
        outputs.record_table(store, group, rows, input_coord=INPUT, replaced=True)
        rescored = before - int(kept.sizes["sample"])
        total = int(rows.sizes["sample"])
    else:
        # a crash between the drop and the append leaves these samples unscored: the
        # next run scores them (nothing is lost, nothing scored twice)
        had = set() if old is None else set(strings(old["sample"]).tolist())
        replaced = [n for n in names.tolist() if n in had]
        rescored = tables.drop_samples(store, group, replaced) if replaced else 0
        if old is not None and rescored == before:  # every stored row replaced
            tables.write_table(new, store=store, path=group, rows=_ROWS)
        else:
            tables.append_samples(new, store=store, path=group, rows=_ROWS)
        # a rescored sample's new row supersedes its old one in the index
        outputs.record_table(store, group, new, input_coord=INPUT)
        total = before - rescored + len(todo)
    return {"group": group, "scored": len(todo), "rescored": rescored, "total": total}
