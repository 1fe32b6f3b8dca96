"""Ingest flow: scan the archive, diff against the catalog, ingest new or changed series.

Tasks take and return paths, keys and catalog rows; they never carry arrays.  The
flow process is the catalog's single writer: it appends the rows of each batch
as soon as the batch finishes, so a crash loses only unfinished batches, and a
rerun picks those up again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from flows._runner import WRITE_LOCK, dask_runner, load_secret, log_dashboard
from medpipe import catalog, ingest
from medpipe import store as store_mod
from medpipe.catalog import FileStat
from medpipe.errors import StoreError
from medpipe.progress import progress_bar
from medpipe.store import store_lock

__all__ = ["ingest_flow", "probe_files", "ingest_series"]

#: Files per probe task.
PROBE_BATCH = 256


@task(name="probe-files", retries=1)
def probe_files(
    archive: str, files: list[dict[str, Any]], demo_secret: bool = False
) -> list[dict[str, Any]]:
    """Hash and header-read a batch of new or changed files."""
    stats = [FileStat(**f) for f in files]
    return ingest.probe_batch(archive, stats, secret=load_secret(allow_demo=demo_secret))


@task(name="ingest-series", retries=1)
def ingest_series(
    archive: str, store: str, plans: list[dict[str, Any]], run_id: str, demo_secret: bool = False
) -> list[dict[str, Any]]:
    """Read and write a batch of series; returns their catalog rows."""
    groups = [ingest.GroupPlan(**p) for p in plans]
    return ingest.ingest_batch(
        archive, store, groups, run_id=run_id, secret=load_secret(allow_demo=demo_secret)
    )


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@flow(name="ingest", log_prints=False)
def ingest_flow(
    archive: str,
    store: str,
    limit: int | None = None,
    cluster: str = "local",
    demo_secret: bool = False,
) -> dict[str, Any]:
    """Ingest an imaging archive into a de-identified OME-Zarr store.

    Parameters
    ----------
    archive
        Archive root folder (DICOM, NIfTI, TIFF/PNG, npz).
    store
        Store URL or path (created if missing).
    limit
        Only the first ``limit`` files, in path order (a quick development run).
    cluster
        ``local``, ``local:N``, ``tcp://host:port``, ``slurm`` or ``kubernetes``.
    demo_secret
        Allow the public demo pseudonymisation secret when none is configured.

    Returns
    -------
    dict
        The run's :class:`~medpipe.ingest.IngestSummary`.
    """
    load_secret(allow_demo=demo_secret)  # fail fast, before any work, when none is configured
    run_id = catalog.new_run_id()
    with store_lock(store, WRITE_LOCK, owner=run_id):
        # no other writer runs now: leftovers of a crashed write can go
        store_mod.clean_temporaries(store, ingest.IMAGES)
        return _ingest_locked(archive, store, limit, cluster, demo_secret, run_id)


def _ingest_locked(
    archive: str, store: str, limit: int | None, cluster: str, demo_secret: bool, run_id: str
) -> dict[str, Any]:
    logger = get_run_logger()
    files = catalog.scan(archive, limit=limit)
    known = catalog.current(store)
    delta = catalog.diff(files, known)
    summary = ingest.IngestSummary(
        run_id=run_id,
        scanned=len(files),
        unchanged=delta.unchanged,
        new=len(delta.new),
        changed=len(delta.changed),
        missing=len(delta.missing),
    )
    logger.info(
        "scanned %d files: %d new, %d changed, %d unchanged, %d missing",
        len(files),
        summary.new,
        summary.changed,
        summary.unchanged,
        summary.missing,
    )
    catalog.append(store, ingest.missing_rows(delta), run_id=run_id)
    todo = [vars(f) for f in delta.todo]
    if todo:
        with dask_runner(cluster) as runner:
            log_dashboard(runner)
            _run_batches(runner, archive, store, todo, known, summary, demo_secret)
    logger.info(
        "ingested %d series (%d files); quarantined %d, skipped %d files",
        summary.series_ingested,
        summary.files_ingested,
        summary.quarantined,
        summary.skipped,
    )
    if todo:
        create_markdown_artifact(
            markdown=summary_markdown(summary),
            key="ingest-summary",
            description="medpipe ingest summary",
        )
    return summary.to_dict()


def _run_batches(runner, archive, store, todo, known, summary, demo_secret) -> None:
    run_id = summary.run_id
    futures = [
        runner.submit(
            probe_files, parameters={"archive": archive, "files": chunk, "demo_secret": demo_secret}
        )
        for chunk in _chunks(todo, PROBE_BATCH)
    ]
    probed: list[dict[str, Any]] = []
    with progress_bar(len(todo), "probe") as advance:
        for fut in as_completed(futures):
            rows = fut.result()
            probed.extend(rows)
            advance(len(rows))
    settled = [r for r in probed if r["status"] != "pending"]
    catalog.append(store, settled, run_id=run_id)
    ingest.summarize(summary, settled)
    plans = ingest.plan(probed, known)
    workers = max(1, sum(runner.client.nthreads().values()))
    batches = ingest.batches(plans, n=4 * workers)
    futures = [
        runner.submit(
            ingest_series,
            parameters={
                "archive": archive,
                "store": store,
                "plans": [vars(p) for p in batch],
                "run_id": run_id,
                "demo_secret": demo_secret,
            },
        )
        for batch in batches
    ]
    failed = 0
    with progress_bar(len(plans), "ingest series") as advance:
        for fut in as_completed(futures):
            try:
                rows = fut.result()
            except Exception as err:  # noqa: BLE001 - finish the other batches first
                failed += 1
                get_run_logger().error("an ingest batch failed after retries: %s", err)
                continue
            catalog.append(store, rows, run_id=run_id)
            ingest.summarize(summary, rows)
            advance(len({r["series"] for r in rows}))
    if failed:
        raise StoreError(
            f"{failed} of {len(futures)} ingest batches failed (store errors, see the log); "
            "their series are not in the catalog, so a rerun ingests them"
        )


def summary_markdown(summary: ingest.IngestSummary) -> str:
    """Markdown for the run artifact: counts and quarantine reasons (no paths, no PHI)."""
    lines = [
        f"# Ingest run `{summary.run_id}`",
        "",
        "| scanned | new | changed | unchanged | missing | series ingested | files ingested "
        "| quarantined | skipped |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary.scanned} | {summary.new} | {summary.changed} | {summary.unchanged} "
        f"| {summary.missing} | {summary.series_ingested} | {summary.files_ingested} "
        f"| {summary.quarantined} | {summary.skipped} |",
    ]
    if summary.reasons:
        lines += ["", "## Quarantine reasons", "", "| files | reason |", "|---|---|"]
        lines += [
            f"| {n} | {r.replace('|', '/')} |"
            for r, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1])
        ]
    return "\n".join(lines) + "\n"
