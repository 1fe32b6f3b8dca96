"""The nightly flow: scan → ingest new/changed → preprocess → features → (retrain) → score.

One Dask cluster serves every stage: the nightly flow starts it (from its ``cluster``
parameter) and hands its scheduler address to the stage flows.  A store lock keeps two
nightly runs from writing the same store at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from typing import Any

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.logging import get_run_logger

from flows import models_stage
from flows._runner import WRITE_LOCK, dask_runner, log_dashboard
from flows.features import features_flow
from flows.ingest import ingest_flow, summary_markdown
from flows.preprocess import preprocess_flow
from medpipe import catalog, report
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group, stale_series
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import pending_series, preprocessed_group
from medpipe.store import store_lock, store_root

__all__ = ["nightly_flow", "NIGHTLY_FEATURES"]

#: Feature families of the nightly run: intensity, texture, and the appearance families
#: (resampled pixels, HOG) that carry most of the signal on small 2D images.
NIGHTLY_FEATURES = FeatureConfig(
    families=("firstorder", "histogram", "glcm", "texture", "pixels", "hog")
)


@contextmanager
def _stage(name: str, stages: dict[str, float]):  # noqa: ANN202
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = time.perf_counter() - start


@flow(name="nightly")
def nightly_flow(
    archive: str,
    store: str,
    labels: str | None = None,
    retrain: bool = False,
    cluster: str = "local",
    demo_secret: bool = False,
    model: str = "nightly",
    preprocess: PreprocessConfig | None = None,
    features: FeatureConfig | None = None,
) -> dict[str, Any]:
    """Bring the store up to date with the archive and score what is new.

    Parameters
    ----------
    archive
        Archive root.
    store
        Store URL or path.
    labels
        CSV/Parquet of labels keyed by SeriesInstanceUID, StudyInstanceUID or patient.
        A changed label file triggers retraining.
    retrain
        Retrain even when the labels did not change.
    cluster
        ``local``, ``local:N``, ``tcp://host:port``, ``slurm`` or ``kubernetes``.
    demo_secret
        Allow the public demo pseudonymisation secret.
    model
        Registered model name to train and score with.
    preprocess, features
        Stage configs (defaults: :meth:`PreprocessConfig.default`, :data:`NIGHTLY_FEATURES`).

    Returns
    -------
    dict
        Per-stage results, stage durations and the report path.
    """
    logger = get_run_logger()
    pcfg = preprocess or PreprocessConfig.default()
    fcfg = features or NIGHTLY_FEATURES
    run_id = catalog.new_run_id()
    stages: dict[str, float] = {}
    out: dict[str, Any] = {"run_id": run_id, "stages": stages}
    with store_lock(store, WRITE_LOCK, owner=run_id), ExitStack() as stack:
        cluster_address = _lazy_cluster(stack, cluster)
        # Each stage first asks, from metadata alone, whether it has anything to do: a
        # night without changes starts no cluster and runs no stage flow.
        with _stage("ingest", stages):
            delta = catalog.diff(catalog.scan(archive), catalog.current(store))
            if delta.todo or delta.missing:
                out["ingest"] = ingest_flow(
                    archive=archive, store=store, cluster=cluster_address(), demo_secret=demo_secret
                )
            else:
                out["ingest"] = _unchanged_summary(run_id, delta)
        with _stage("preprocess", stages):
            group = preprocessed_group(pcfg)
            if pending_series(store, config=pcfg):
                out["preprocess"] = preprocess_flow(
                    store=store, config=pcfg, cluster=cluster_address()
                )
            else:
                out["preprocess"] = {"group": group, "done": 0, "skipped": 0, "keys": []}
        with _stage("features", stages):
            if stale_series(store, config=fcfg, source=group):
                out["features"] = features_flow(
                    store=store, config=fcfg, source=group, cluster=cluster_address()
                )
            else:
                out["features"] = {
                    "group": features_group(fcfg, source=group),
                    "computed": 0,
                    "kept": None,
                    "keys": [],
                }
        with _stage("model", stages):
            out["model"] = models_stage.train_and_score(
                store=store,
                model=model,
                labels=labels,
                retrain=retrain,
                features_group=out["features"]["group"],
                cluster=cluster_address,
                demo_secret=demo_secret,
            )
    out["report"] = _report(store, run_id, out, stages)
    _artifacts(store, out, stages)
    logger.info(
        "nightly run %s done: %s", run_id, ", ".join(f"{k} {v:.1f}s" for k, v in stages.items())
    )
    return out


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


def _unchanged_summary(run_id: str, delta: catalog.Diff) -> dict[str, Any]:
    from medpipe.ingest import IngestSummary

    return IngestSummary(
        run_id=run_id, scanned=delta.unchanged, unchanged=delta.unchanged
    ).to_dict()


def _report(store: str, run_id: str, out: dict[str, Any], stages: dict[str, float]) -> str:
    group = out["preprocess"]["group"]
    model = out.get("model") or {}
    return report.write_report(
        store,
        run_id,
        summary={k: v for k, v in out["ingest"].items() if k != "reasons"},
        stages=stages,
        thumbnails={
            key: report.thumbnail_pair(store, key, preprocessed=group)
            for key in out["preprocess"]["keys"][:4]
        },
        drift=report.feature_drift(store, out["features"]["group"], out["features"]["keys"]),
        roc=model.get("roc_uri"),
        metrics=model.get("metrics"),
        quarantine=report.quarantine_rows(store),
    )


def _artifacts(store: str, out: dict[str, Any], stages: dict[str, float]) -> None:
    from medpipe.ingest import IngestSummary

    ingest = IngestSummary(**out["ingest"])
    lines = [summary_markdown(ingest), "## Stage durations", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    model = out.get("model") or {}
    if model.get("metrics"):
        lines += [
            "",
            f"## Current model `{model.get('name')}:{model.get('version')}`",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in model["metrics"].items()]
    fs, root = store_root(store)
    report_url = fs.unstrip_protocol(f"{root}/{out['report']}")
    lines += ["", f"QA report: [{out['report']}]({report_url})"]
    create_markdown_artifact(
        markdown="\n".join(lines), key="nightly-summary", description="medpipe nightly run"
    )
    create_link_artifact(report_url, link_text="QA report", key="nightly-qa-report")
