"""Which run a QA report is about: its :class:`RunContext`, from ``report.json`` or the catalog.

:func:`list_runs` lists the runs a report can be written for, :func:`run_context` says
what one brought (pseudonymous series keys, counts and stage times only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medpipe import store as _store
from medpipe.errors import ConfigError
from medpipe.store import layout

__all__ = ["MANIFEST", "RunContext", "list_runs", "run_context"]

#: The machine-readable summary next to each ``index.html``.
MANIFEST = "report.json"


@dataclass(frozen=True)
class RunContext:
    """What one run brought, as the report needs it (pseudonymous keys only).

    Attributes
    ----------
    run_id
        The run (the report's folder).
    new_series
        Series keys whose samples are "this run".
    features_group, model
        The feature table and the model name (``None``: choose from the store).
    ingest_run
        The catalog run id of the run's ingest, when it differs from ``run_id``.
    summary, stages
        Counts of the run and stage durations (seconds).
    """

    run_id: str
    new_series: tuple[str, ...] = ()
    features_group: str | None = None
    model: str | None = None
    ingest_run: str | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)
    stages: Mapping[str, float] = field(default_factory=dict)


def _manifest(store: str, run_id: str) -> dict[str, Any] | None:
    fs, root = _store.store_root(store)
    path = f"{root}/{layout.report(run_id)}/{MANIFEST}"
    if not fs.exists(path):
        return None
    return json.loads(fs.cat_file(path))


def list_runs(store: str) -> list[str]:
    """Run ids a report can be written for, oldest first.

    The runs with a report (``reports/<id>/report.json``) and the catalog's runs; an
    ingest run that a nightly report already covers is listed under the nightly id.
    """
    from medpipe import catalog

    fs, root = _store.store_root(store)
    base = f"{root}/{layout.REPORTS}"
    reported: dict[str, str | None] = {}
    if fs.exists(base):
        for p in fs.ls(base, detail=False):
            rid = p.rstrip("/").rsplit("/", 1)[-1]
            man = _manifest(store, rid)
            if man is not None:
                reported[rid] = man.get("ingest_run")
    covered = {v for v in reported.values() if v}
    rows = catalog.read_catalog(store)
    runs = set(reported) | ({str(r) for r in rows["run_id"].unique()} - covered)
    return sorted(runs)


def run_context(store: str, run_id: str | None = None) -> RunContext:
    """What a run brought: from its report's ``report.json``, else from the catalog.

    Parameters
    ----------
    store
        Store URL or path.
    run_id
        A run id (:func:`list_runs`); default the latest.

    Raises
    ------
    ConfigError
        The store has no run, or none with this id (the message lists the latest).
    """
    from medpipe import catalog

    runs = list_runs(store)
    if not runs:
        raise ConfigError(f"store {store!r} has no run yet (run medpipe ingest or nightly)")
    run_id = run_id or runs[-1]
    man = _manifest(store, run_id)
    if man is not None:
        ctx = man["context"]
        return RunContext(
            run_id=run_id,
            new_series=tuple(ctx.get("new_series", ())),
            features_group=ctx.get("features_group"),
            model=ctx.get("model"),
            ingest_run=ctx.get("ingest_run"),
            summary=ctx.get("summary", {}),
            stages=ctx.get("stages", {}),
        )
    rows = catalog.read_catalog(store)
    mine = rows[rows["run_id"].astype(str) == run_id]
    if mine.empty:
        raise ConfigError(
            f"store {store!r} has no run {run_id!r}; latest runs: {', '.join(runs[-5:])}"
        )
    ingested = mine[mine["status"] == "ingested"]
    summary = {"run": run_id, **{str(k): int(v) for k, v in mine["status"].value_counts().items()}}
    summary["series ingested"] = int(ingested["series"].nunique())
    return RunContext(
        run_id=run_id,
        new_series=tuple(sorted({str(s) for s in ingested["series"] if s})),
        ingest_run=run_id,
        summary=summary,
    )
