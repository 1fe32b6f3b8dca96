"""The nightly flow: scan → ingest new/changed → preprocess → features → (retrain) → score.

One Dask cluster serves every stage: the nightly flow starts it (from its ``cluster``
parameter) on first need and hands its scheduler address to the stage flows.  What
runs is decided in :mod:`medpipe.nightly` and :mod:`medpipe.models.lifecycle`; this
module only wires those decisions to the stage flows.  A store lock keeps two nightly
runs from writing the same store at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._credentials import load_archive_credentials
from flows._runner import WRITE_LOCK, dask_runner, load_secret, log_dashboard
from flows.features import FeatureParams, features_flow
from flows.ingest import IngestParams, ingest_flow
from flows.preprocess import PreprocessParams, preprocess_flow
from flows.score import ScoreParams, score_flow
from flows.train import TrainParams, train_flow
from medpipe import catalog, nightly, report
from medpipe.features import FeatureConfig
from medpipe.models import lifecycle
from medpipe.nightly import NIGHTLY_FEATURES, NIGHTLY_MODEL
from medpipe.preprocess import PreprocessConfig
from medpipe.progress import progress_bar
from medpipe.results import ModelStageResult, NightlyResult
from medpipe.store import outputs, store_lock

__all__ = ["NightlyParams", "nightly_flow", "NIGHTLY_FEATURES"]


class NightlyParams(BaseModel):
    """What the nightly run works on (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    archive: str = Field(
        description="Archive: a folder, an fsspec URL (s3://bucket/prefix) or a DICOMweb "
        "server (dicomweb+https://host/dicom-web)"
    )
    concurrency: int = Field(
        4, ge=1, description="At most this many retrievals from a remote archive at a time"
    )
    store: str = Field(description="Store path or fsspec URL")
    labels: str | None = Field(
        None,
        description="CSV/Parquet of labels keyed by SeriesInstanceUID, StudyInstanceUID or "
        "PatientID; a changed label file triggers retraining",
    )
    retrain: bool = Field(False, description="Retrain even when the labels did not change")
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")
    demo_secret: bool = Field(False, description="Allow the public demo secret")
    model: str = Field(NIGHTLY_MODEL, description="Registered model name to train and score with")
    preprocess: PreprocessConfig | None = Field(
        None, description="Preprocessing steps; default PreprocessConfig.default()"
    )
    features: FeatureConfig | None = Field(
        None, description="Feature families; default the nightly families"
    )
    drift_threshold: float = Field(
        report.DEFAULT_PSI_THRESHOLD,
        ge=0,
        description="PSI at or above which the QA report flags a feature as drifted",
    )


@contextmanager
def _stage(name: str, stages: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = time.perf_counter() - start


@flow(name="nightly")
def nightly_flow(params: NightlyParams) -> NightlyResult:
    """Bring the store up to date with the archive and score what is new.

    Returns
    -------
    NightlyResult
        Per-stage results, stage durations and the report path (``None`` when
        nothing changed: such a night writes no report).
    """
    logger = get_run_logger()
    store, archive = params.store, params.archive
    pcfg = params.preprocess or PreprocessConfig.default()
    fcfg = params.features or NIGHTLY_FEATURES
    run_id = catalog.new_run_id()
    load_archive_credentials(archive)  # a PACS's, from Secret blocks if not in env
    stages: dict[str, float] = {}
    with store_lock(store, WRITE_LOCK, owner=run_id), ExitStack() as stack:
        cluster = _lazy_cluster(stack, params.cluster)
        # decided from metadata alone: a night without changes starts no cluster
        # (the archive is listed once: ingest gets this listing)
        files, delta, plan = nightly.survey(store, archive, preprocess=pcfg, features=fcfg)
        pgroup = plan.preprocess_group
        ingested, preprocessed, featured = nightly.skipped_results(
            plan, run_id=run_id, files=files, delta=delta
        )
        # one stage bar above the stages' own bars: the stages that run, then the model
        ran = stack.enter_context(
            progress_bar(sum((plan.ingest, plan.preprocess, plan.features)) + 1, "nightly")
        )
        with _stage("ingest", stages):
            if plan.ingest:
                listing = catalog.save_listing(store, files, run_id=run_id)
                try:
                    ingested = ingest_flow(
                        IngestParams(
                            archive=archive,
                            store=store,
                            cluster=cluster(),
                            demo_secret=params.demo_secret,
                            concurrency=params.concurrency,
                            listing=listing,
                        )
                    )
                finally:
                    catalog.drop_listing(store, listing)
                ran(1)
        with _stage("preprocess", stages):
            if plan.preprocess:
                preprocessed = preprocess_flow(
                    PreprocessParams(store=store, config=pcfg, cluster=cluster())
                )
                ran(1)
        with _stage("features", stages):
            if plan.features:
                featured = features_flow(
                    FeatureParams(store=store, config=fcfg, source=pgroup, cluster=cluster())
                )
                ran(1)
        with _stage("model", stages):
            model = _model_stage(params, plan.features_group, cluster)
            ran(1)
        catalog.compact(store, owner=run_id, min_parts=nightly.COMPACT_AFTER)
        outputs.compact(store, owner=run_id, min_parts=nightly.COMPACT_AFTER)
        path = None
        if report.needs_report(any_work=plan.any_work, model=model):
            # inside the lock: the report is a store write like any other
            path, qa = report.write_nightly_report(
                store,
                run_id,
                ingest=ingested,
                preprocess=preprocessed,
                features=featured,
                model=model,
                stages=stages,
                threshold=params.drift_threshold,
                archive=archive,
            )
    if path is None:
        logger.info("nothing changed: no QA report for run %s", run_id)
        summary_md = report.nightly_markdown(ingested, stages, model, report=None, url=None)
    else:
        url = report.report_url(store, path)
        summary_md = report.nightly_markdown(ingested, stages, model, report=path, url=url)
        create_markdown_artifact(
            markdown=report.qa_markdown(qa, path=path, url=url),
            key="nightly-qa",
            description="medpipe QA report: drifted features and key figures",
        )
        create_link_artifact(url, link_text="QA report", key="nightly-qa-report")
    create_markdown_artifact(
        markdown=summary_md, key="nightly-summary", description="medpipe nightly run"
    )
    logger.info(
        "nightly run %s done: %s", run_id, ", ".join(f"{k} {v:.1f}s" for k, v in stages.items())
    )
    return NightlyResult(
        run_id=run_id,
        ingest=ingested,
        preprocess=preprocessed,
        features=featured,
        model=model,
        stages=stages,
        report=path,
    )


def _model_stage(params: NightlyParams, group: str, cluster: Callable[[], str]) -> ModelStageResult:
    """Retrain if the lifecycle says so (labels pseudonymised once), then score what is new."""
    store, name = params.store, params.model
    labels_path = lifecycle.prepare_labels(
        store, params.labels, secret=lambda: load_secret(allow_demo=params.demo_secret)
    )
    trained = decision = None
    if lifecycle.needs_training(store, name, labels_path, retrain=params.retrain):
        trained = train_flow(
            TrainParams(
                store=store,
                model=name,
                labels=params.labels,
                stored_labels=labels_path,
                features=group,
                evaluate_split="val",
                cluster=cluster(),
                demo_secret=params.demo_secret,
            )
        )
        decision = lifecycle.promote(store, name, trained)
    plan = lifecycle.plan_scoring(store, name, group)
    scored = 0
    if plan.run:
        scored = score_flow(
            ScoreParams(store=store, model=plan.ref, features=group, cluster=cluster())
        ).scored
    return lifecycle.model_stage_result(
        store, plan, trained=trained, decision=decision, scored=scored
    )


def _lazy_cluster(stack: ExitStack, cluster: str) -> Callable[[], str]:
    """A function returning the scheduler address, starting the cluster on first call."""
    address: list[str] = []

    def get() -> str:
        if not address:
            runner = stack.enter_context(dask_runner(cluster))
            link = log_dashboard(runner)
            if link:
                create_link_artifact(link, link_text="Dask dashboard", key="dask-dashboard")
            address.append(runner.client.scheduler.address)
        return address[0]

    return get
