"""Score tables: probabilities of a registered model for every sample of a feature table.

``scores/<name>/<version>`` is a table (:mod:`medpipe.store.tables`) that only grows:
each run appends the samples not scored yet.
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
from medpipe.store import layout, tables

__all__ = ["SCORES", "scores_group", "open_scores", "score_model"]

#: Store group of the scores: ``scores/<name>/<version>``.
SCORES = layout.SCORES
#: Samples per chunk of a score table.
_ROWS = 65_536


def scores_group(name: str, version: str) -> str:
    """``scores/<name>/<version>``."""
    return layout.scores(reg.check_name(name), version)


def open_scores(store: str, group: str) -> xr.Dataset | None:
    """A stored score table (lazily), or ``None``."""
    if not tables.has_table(store, group):
        return None
    return tables.open_table(store, group)


def score_model(
    store: str,
    *,
    model: str,
    features: str | None = None,
    limit: int | None = None,
    progress: Report | None = None,
) -> dict[str, Any]:
    """Score every sample that has features and no score yet for this model version.

    Probabilities are computed block-wise on the current Dask scheduler (a lazy
    ``map_blocks`` over the feature array, as :class:`~dask_ml.wrappers.ParallelPostFit`
    does) and appended to ``scores/<name>/<version>`` (the rows already there are not
    rewritten): variables ``probability`` (float, NaN where a needed feature is
    missing) and ``predicted`` (0/1, -1 when unscorable), coords ``sample``, ``series``,
    ``series_uid``, ``study``, ``patient`` (Zarr ``string`` arrays).  A k-class model's
    table has a ``class`` dimension instead (:func:`medpipe.models.multiclass.score_table`).

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
        ``group``, ``scored`` (new this run), ``total``.
    """
    fitted, meta = load_ref(store, model)
    group = scores_group(meta["name"], meta["version"])
    table = feature_table(store, features or meta["features_group"])
    check_compatible(meta, table)
    # the scored set is read and the new rows appended under the registry lock, so two
    # concurrent runs never score (and append) the same samples twice
    with reg.registry_lock(store):
        return _append_new(store, group, table, fitted, meta, limit, progress)


def _append_new(
    store: str, group: str, table: xr.Dataset, fitted: Any, meta: dict[str, Any],
    limit: int | None, progress: Report | None = None,
) -> dict[str, Any]:
    old = open_scores(store, group)
    done = set() if old is None else set(strings(old["sample"]))
    samples = strings(table["sample"])
    todo = [i for i, s in enumerate(samples) if s not in done]
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return {"group": group, "scored": 0, "total": len(done)}
    sub = table.isel(sample=todo).sel(feature=meta["feature_names"])
    prob = est.positive_proba(fitted, sub["features"].data)
    if prob.ndim == 2:  # k > 2 classes: a class dimension (medpipe.models.multiclass)
        new = persist_with_progress(multiclass.score_table(prob, sub, meta), var="probability",
                                    description="score", report=progress)
        tables.append_samples(new, store=store, path=group, rows=_ROWS)
        return {"group": group, "scored": len(todo), "total": len(done) + len(todo)}
    thr = float(meta.get("threshold", 0.5))
    pred = da.where(da.isnan(prob), -1, (prob >= thr).astype(np.int8)).astype(np.int8)
    coords = {
        c: ("sample", strings(sub[c]))
        for c in ("series", "series_uid", "study", "patient")
        if c in sub.coords
    }
    new = xr.Dataset(
        {"probability": ("sample", prob), "predicted": ("sample", pred)},
        coords={"sample": strings(sub["sample"]), **coords},
        attrs={"model": meta["name"], "version": meta["version"], "threshold": thr,
               "features_group": meta["features_group"]},
    )
    new = persist_with_progress(new, var="probability", description="score", report=progress)
    tables.append_samples(new, store=store, path=group, rows=_ROWS)
    return {"group": group, "scored": len(todo), "total": len(done) + len(todo)}
