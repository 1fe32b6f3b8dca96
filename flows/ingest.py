"""Ingest flow: scan the archive, diff against the catalog, ingest new or changed series.

Tasks take and return paths, keys and catalog rows; they never carry arrays.  The
flow process is the catalog's single writer: it appends the rows of each batch
as soon as the batch finishes, so a crash loses only unfinished batches, and a
rerun picks those up again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dask
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._credentials import load_archive_credentials
from flows._runner import WRITE_LOCK, dask_runner, load_secret, log_dashboard
from medpipe import catalog, ingest, sources
from medpipe import store as store_mod
from medpipe.catalog import FileStat
from medpipe.errors import StoreError
from medpipe.ingest import IngestSummary, start_summary
from medpipe.io import REGISTRY, ReaderRegistry
from medpipe.progress import progress_bar
from medpipe.report import ingest_markdown
from medpipe.store import store_lock

__all__ = ["IngestParams", "ingest_flow", "probe_files", "ingest_series", "summary_markdown"]

#: The ingest run's Markdown artifact (kept under its old name).
summary_markdown = ingest_markdown


class IngestParams(BaseModel):
    """What to ingest (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    archive: str = Field(
        description="Archive: a folder (DICOM, NIfTI, TIFF/PNG, npz), an fsspec URL "
        "(s3://bucket/prefix) or a DICOMweb server (dicomweb+https://host/dicom-web)"
    )
    store: str = Field(description="Store path or fsspec URL (created if missing)")
    limit: int | None = Field(None, description="Only the first N files, in path order (dev run)")
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")
    demo_secret: bool = Field(False, description="Allow the public demo secret")
    decode_timeout_s: float = Field(
        ingest.DECODE_TIMEOUT_S, gt=0,
        description="Seconds a series may take when a batch that killed its worker is isolated",
    )
    concurrency: int = Field(
        sources.DEFAULT_CONCURRENCY, ge=1,
        description="At most this many retrievals from a remote archive (PACS) at a time",
    )
    listing: str | None = Field(
        None, description="A listing of the archive already made (store path; set by nightly)"
    )

#: Files per probe task.
PROBE_BATCH = 256


@task(name="probe-files", retries=1)
def probe_files(
    archive: str,
    files: list[dict[str, Any]],
    demo_secret: bool = False,
    readers: ReaderRegistry | None = None,
) -> list[dict[str, Any]]:
    """Hash and header-read a batch of new or changed files (with the flow's readers)."""
    stats = [FileStat(**f) for f in files]
    return ingest.probe_batch(
        archive, stats, secret=load_secret(allow_demo=demo_secret), registry=readers
    )


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
def ingest_flow(params: IngestParams) -> IngestSummary:
    """Ingest an imaging archive into a de-identified OME-Zarr store.

    Parameters
    ----------
    params
        Archive, store, ``limit`` (only the first files, in path order), cluster spec
        (``local``, ``local:N``, ``tcp://host:port``, ``slurm`` or ``kubernetes``) and
        whether the public demo secret is allowed.

    Returns
    -------
    IngestSummary
        The run's counts.
    """
    load_secret(allow_demo=params.demo_secret)  # fail fast, before any work
    load_archive_credentials(params.archive)  # a PACS's, from Secret blocks if not in env
    run_id = catalog.new_run_id()
    with store_lock(params.store, WRITE_LOCK, owner=run_id):
        # no other writer runs now: leftovers of a crashed write can go
        store_mod.clean_temporaries(params.store, ingest.IMAGES)
        return _ingest_locked(params, run_id)


def _ingest_locked(params: IngestParams, run_id: str) -> IngestSummary:
    logger = get_run_logger()
    files = (catalog.load_listing(params.store, params.listing) if params.listing
             else catalog.scan(params.archive, limit=params.limit))
    known = catalog.current(params.store)
    delta = catalog.diff(files, known)
    summary = start_summary(run_id, files, delta)
    logger.info(
        "scanned %d files: %d new, %d changed, %d unchanged, %d missing",
        summary.scanned,
        summary.new,
        summary.changed,
        summary.unchanged,
        summary.missing,
    )
    catalog.append(params.store, ingest.missing_rows(delta), run_id=run_id)
    if delta.todo:
        # a batch whose worker dies fails at once (it is then isolated, not retried);
        # a remote archive's entries are read from a local staging folder
        with sources.staged(params.archive, concurrency=params.concurrency) as stage, \
                dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
                dask_runner(params.cluster) as runner:
            log_dashboard(runner)
            failed = stage.fetch(f.path for f in delta.todo)
            todo = [vars(f) for f in delta.todo if f.path not in failed]
            root = params.archive if stage.local else str(stage.root)
            _run_batches(runner, params, todo, known, summary, root=root, stage=stage)
    logger.info(
        "ingested %d series (%d files); quarantined %d, skipped %d files",
        summary.series_ingested,
        summary.files_ingested,
        summary.quarantined,
        summary.skipped,
    )
    if delta.todo:
        ingest.check_fetched(stage)
        create_markdown_artifact(
            markdown=ingest_markdown(summary),
            key="ingest-summary",
            description="medpipe ingest summary",
        )
    return summary


def _run_batches(runner, params: IngestParams, todo, known, summary, *, root, stage) -> None:  # noqa: ANN001
    run_id = summary.run_id
    archive, store, demo_secret = root, params.store, params.demo_secret
    readers = REGISTRY.snapshot()  # readers registered in this process reach the workers
    futures = [
        runner.submit(
            probe_files,
            parameters={"archive": archive, "files": chunk, "demo_secret": demo_secret,
                        "readers": readers},
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
    plans = ingest.stage_groups(stage, ingest.plan(probed, known))
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
    batch_of = {id(f): b for f, b in zip(futures, batches, strict=True)}
    failed = 0
    with progress_bar(len(plans), "ingest series") as advance:
        for fut in as_completed(futures):
            try:
                rows = fut.result()
            except Exception as err:  # noqa: BLE001 - finish the other batches first
                if not ingest.is_worker_death(err):
                    failed += 1
                    get_run_logger().error("an ingest batch failed after retries: %s", err)
                    continue
                get_run_logger().warning(
                    "an ingest batch killed its worker; isolating the file that does it"
                )
                rows = ingest.isolate_batch(
                    archive, store, batch_of[id(fut)], run_id=run_id,
                    secret=load_secret(allow_demo=demo_secret),
                    timeout_s=params.decode_timeout_s,
                )
            catalog.append(store, rows, run_id=run_id)
            ingest.summarize(summary, rows)
            advance(len({r["series"] for r in rows}))
    if failed:
        raise StoreError(
            f"{failed} of {len(futures)} ingest batches failed (store errors, see the log); "
            "their series are not in the catalog, so a rerun ingests them"
        )
