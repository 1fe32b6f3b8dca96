"""A whole ingest run in this process (or on a Dask cluster), and its counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from medpipe import catalog, sources
from medpipe.catalog import FileStat
from medpipe.errors import ArchiveError
from medpipe.ingest.isolation import DECODE_TIMEOUT_S, is_worker_death, isolate_batch
from medpipe.ingest.planning import GroupPlan, batches, plan, probe_batch
from medpipe.ingest.writing import ingest_batch, ingest_group
from medpipe.io.registry import REGISTRY

__all__ = [
    "IngestSummary",
    "summarize",
    "ingest_archive",
    "ingest_files",
    "missing_rows",
    "stage_groups",
    "check_fetched",
]


@dataclass
class IngestSummary:
    """Counts of one ingest run, for printing and for Prefect artifacts."""

    run_id: str
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    missing: int = 0
    series_ingested: int = 0
    files_ingested: int = 0
    quarantined: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable)."""
        return asdict(self)


def start_summary(
    run_id: str, files: Sequence[FileStat], delta: catalog.Diff
) -> IngestSummary:
    """The counts of an ingest run known before any file is read (scan and diff).

    Parameters
    ----------
    run_id
        The run.
    files
        The scan (:func:`medpipe.catalog.scan`).
    delta
        The scan diffed against the catalog.

    Returns
    -------
    IngestSummary
        ``scanned``, ``unchanged``, ``new``, ``changed`` and ``missing`` filled in; the
        rest is added batch by batch with :func:`medpipe.ingest.summarize`.
    """
    return IngestSummary(
        run_id=run_id,
        scanned=len(files),
        unchanged=delta.unchanged,
        new=len(delta.new),
        changed=len(delta.changed),
        missing=len(delta.missing),
    )


def summarize(summary: IngestSummary, rows: Iterable[Mapping[str, Any]]) -> IngestSummary:
    """Add a batch's catalog rows to the run's counts (in place; returns it)."""
    series = set()
    for r in rows:
        status = r["status"]
        if status == "ingested":
            summary.files_ingested += 1
            series.add(r["series"])
        elif status in ("quarantined", "skipped"):
            setattr(summary, status, getattr(summary, status) + 1)
            if status == "quarantined":
                reason = str(r.get("reason") or "")
                summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
    summary.series_ingested += len(series)
    return summary


def ingest_archive(
    archive: str,
    store: str,
    *,
    secret: bytes,
    limit: int | None = None,
    run_id: str | None = None,
    client: Any = None,
    timeout_s: float = DECODE_TIMEOUT_S,
    concurrency: int = sources.DEFAULT_CONCURRENCY,
) -> IngestSummary:
    """Ingest an archive without Prefect: in this process, or on a Dask cluster.

    The same steps as ``flows/ingest.py``: a path for debugging, notebooks and tests.
    Catalog rows are appended per series (per batch on a cluster), so an interrupted
    run loses at most the series being written.  On a cluster the work carries the
    readers of this process's registry (a snapshot for probing, each plan's reader
    for reading), so readers registered here at run time work in the workers too.

    Parameters
    ----------
    archive
        Archive root, fsspec URL or ``dicomweb+http(s)://`` URL
        (:mod:`medpipe.sources`).  A remote archive's new and changed entries (and
        their series' unchanged ones) are copied to a temporary folder and read there.
    store
        Store URL or path.
    secret
        Pseudonymisation secret.
    limit
        Only the first ``limit`` files in path order.
    run_id
        Defaults to a new id.
    client
        A ``distributed.Client``: probe and ingest batches run on its workers.  The
        secret travels to them with the work (use the flow, whose workers read it
        from their environment, where that is not wanted).  A batch whose worker
        process died (``KilledWorker``) is bisected on fresh processes
        (:func:`medpipe.ingest.isolation.isolate_batch`): the series that kills its
        process is quarantined with the reason, the others are ingested.
    timeout_s
        Seconds one series may take to read and write while a dead batch is isolated.
    concurrency
        At most this many retrievals from a remote archive at a time.

    Returns
    -------
    IngestSummary

    Raises
    ------
    ArchiveError
        Some entries could not be retrieved (after retries).  Everything else was
        ingested first; the failed entries have no catalog row, so the next run
        retrieves them.
    """
    run_id = run_id or catalog.new_run_id()
    files = catalog.scan(archive, limit=limit)
    known = catalog.current(store)
    delta = catalog.diff(files, known)
    summary = start_summary(run_id, files, delta)
    catalog.append(store, missing_rows(delta), run_id=run_id)
    if not delta.todo:
        return summary
    with sources.staged(archive, concurrency=concurrency) as stage:
        failed = stage.fetch(f.path for f in delta.todo)
        todo = [f for f in delta.todo if f.path not in failed]
        root = archive if stage.local else str(stage.root)
        if client is not None:
            _on_cluster(client, root, store, todo, known, summary, secret, timeout_s, stage)
        else:
            ingest_files(root, store, todo, secret=secret, run_id=run_id, known=known,
                         summary=summary, stage=stage)
    check_fetched(stage)
    return summary


def stage_groups(stage: sources.Staging | None, groups: Sequence[GroupPlan]) -> list[GroupPlan]:
    """Fetch every member of the planned series; keep the series fully fetched.

    Parameters
    ----------
    stage
        The run's staging folder (``None`` or a local archive: nothing to fetch).
    groups
        Plans from :func:`medpipe.ingest.plan`.

    Returns
    -------
    list of GroupPlan
        The plans whose files are all staged: a series is never read in part.
    """
    if stage is None or stage.local:
        return list(groups)
    failed = stage.fetch(m["path"] for g in groups for m in g.members)
    return [g for g in groups if not any(m["path"] in failed for m in g.members)]


def check_fetched(stage: sources.Staging) -> None:
    """Raise :class:`~medpipe.errors.ArchiveError` when entries could not be retrieved."""
    if stage.failed:
        raise ArchiveError(
            f"{len(stage.failed)} archive entries could not be retrieved (see the log); "
            "they have no catalog row, so the next run retrieves them"
        )


def ingest_files(
    archive: str,
    store: str,
    files: Sequence[FileStat],
    *,
    secret: bytes,
    run_id: str,
    known: pd.DataFrame | None = None,
    summary: IngestSummary | None = None,
    stage: sources.Staging | None = None,
) -> list[dict[str, Any]]:
    """Probe, plan and ingest these files in this process (no archive scan, no diff).

    Catalog rows are appended as each series is written (the probe's settled rows
    first), so an interrupted call loses at most the series being written.

    Parameters
    ----------
    archive
        Archive root the files' paths are relative to.
    store
        Store URL or path.
    files
        The files to ingest (``catalog.scan`` entries, or a hand-made list).
    secret
        Pseudonymisation secret.
    run_id
        Id of the ingest run.
    known
        The store's current catalog, for planning (default: none, every series anew).
    summary
        Counts to add the rows to (:func:`summarize`), if any.
    stage
        Where a remote archive's files are staged (``archive`` is its root): the
        planned series' other files are fetched too (:func:`stage_groups`).

    Returns
    -------
    list of dict
        Every catalog row written, in order.
    """
    probed = probe_batch(archive, files, secret=secret)
    written = [r for r in probed if r["status"] != "pending"]
    catalog.append(store, written, run_id=run_id)
    if summary is not None:
        summarize(summary, written)
    groups = plan(probed, pd.DataFrame() if known is None else known)
    for group in stage_groups(stage, groups):
        rows = ingest_group(archive, store, group, secret=secret, run_id=run_id)
        catalog.append(store, rows, run_id=run_id)
        if summary is not None:
            summarize(summary, rows)
        written += rows
    return written


#: Files per probe task on a cluster.
_PROBE_BATCH = 256


def _on_cluster(
    client: Any,
    archive: str,
    store: str,
    todo: Sequence[FileStat],
    known: pd.DataFrame,
    summary: IngestSummary,
    secret: bytes,
    timeout_s: float,
    stage: sources.Staging | None = None,
) -> None:
    """Probe and ingest on a Dask cluster; this process writes the catalog."""
    from distributed import as_completed

    run_id = summary.run_id
    readers = REGISTRY.snapshot()
    chunks = [list(todo[i : i + _PROBE_BATCH]) for i in range(0, len(todo), _PROBE_BATCH)]
    futures = [
        client.submit(probe_batch, archive, c, secret=secret, registry=readers, pure=False)
        for c in chunks
    ]
    probed: list[dict[str, Any]] = []
    for fut in as_completed(futures):
        probed.extend(fut.result())
    settled = [r for r in probed if r["status"] != "pending"]
    catalog.append(store, settled, run_id=run_id)
    summarize(summary, settled)
    plans = stage_groups(stage, plan(probed, known, registry=readers))
    workers = max(1, sum(client.nthreads().values()))
    plan_batches = batches(plans, n=4 * workers)
    futures = [
        client.submit(ingest_batch, archive, store, b, secret=secret, run_id=run_id, pure=False)
        for b in plan_batches
    ]
    batch_of = {id(f): b for f, b in zip(futures, plan_batches, strict=True)}
    for fut in as_completed(futures):
        try:
            rows = fut.result()
        except Exception as err:
            if not is_worker_death(err):
                raise
            # a file killed the worker: find it on fresh processes, ingest the rest
            rows = isolate_batch(
                archive, store, batch_of[id(fut)], secret=secret, run_id=run_id,
                timeout_s=timeout_s,
            )
        catalog.append(store, rows, run_id=run_id)
        summarize(summary, rows)


def missing_rows(delta: catalog.Diff) -> list[dict[str, Any]]:
    """Catalog rows for files that disappeared from the archive (their images are kept)."""
    return [
        {"path": p, "status": "missing", "reason": "no longer in archive"} for p in delta.missing
    ]
