"""Train flow: grouped-CV model selection and registration on the cluster, then evaluate."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._runner import dask_runner, load_secret, log_dashboard, on_cluster
from medpipe.errors import ModelError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group
from medpipe.models import labels as lab
from medpipe.models import lifecycle
from medpipe.models import registry as reg
from medpipe.models.metrics import format_metric
from medpipe.models.train import evaluate_model, train_model
from medpipe.progress import relay, remote_report
from medpipe.report import metrics_markdown, metrics_rows, png_bytes_uri
from medpipe.results import EvaluationResult, TrainResult

__all__ = ["TrainParams", "train_flow", "train_task", "evaluate_task", "metrics_artifacts"]


class TrainParams(BaseModel):
    """What to train (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Store path or fsspec URL")
    model: str = Field(description="Model name: models/<name>/<version>")
    labels: str = Field(
        description="CSV/Parquet keyed by SeriesInstanceUID, StudyInstanceUID or PatientID "
        "with a 'label' (0/1) and optional 'split' column"
    )
    stored_labels: str | None = Field(
        None,
        description="A label table this run already recorded (labels/<hash>.parquet): "
        "used as it is, 'labels' is not read again",
    )
    features: str | None = Field(
        None, description="Feature table group (features/<hash>); default from feature_config"
    )
    feature_config: FeatureConfig = Field(default_factory=FeatureConfig)
    source: str = Field("images", description="images or preprocessed/<hash>")
    estimator: Literal["svm", "logreg", "rf", "cnn", "all"] = Field(
        "all", description="all: each, and their soft vote; the best CV AUC wins"
    )
    n_splits: int = Field(5, ge=2, description="Patient-grouped CV folds of the selection")
    outer_folds: int = Field(
        3, ge=0, description="Outer folds of the nested CV that estimates the chosen model's "
        "AUC (selection never sees them; training takes ~(outer_folds + 1)x as long); "
        "0 = none: the reported CV AUC is then the optimistic selection score",
    )
    seed: int = 0
    evaluate_split: str | None = Field(
        "val", description="Evaluate on this held-out split afterwards, if it has labels"
    )
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")
    demo_secret: bool = Field(False, description="Allow the public demo secret")

    def features_group(self) -> str:
        """The feature table to train on."""
        return self.features or features_group(self.feature_config, source=self.source)


@task(name="train-model")
def train_task(
    params: TrainParams,
    labels_path: str,
    label_source: str,
    scheduler: str,
    progress_topic: str | None = None,
) -> TrainResult:
    """Grouped-CV search, refit and registration, as a client of the cluster at ``scheduler``.

    Runs in the flow's process (not on a worker), with a client of its own: the
    selection submits its batches of fold fits to the cluster from here.  Its steps (see
    :func:`medpipe.models.train.train_model`) are reported to ``progress_topic``'s relay.
    """
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client, client.as_current(), \
            remote_report(progress_topic) as report:
        out = train_model(
            params.store,
            name=params.model,
            features=params.features_group(),
            labels=lab.read_stored_labels(params.store, labels_path),
            label_source=label_source,
            estimator=params.estimator,
            n_splits=params.n_splits,
            seed=params.seed,
            outer_folds=params.outer_folds,
            progress=report,
        )
    return TrainResult.from_dict(out)


@task(name="evaluate-model")
def evaluate_task(store: str, model: str, split: str) -> EvaluationResult:
    """Metrics of a registered model on a held-out split."""
    with on_cluster():
        return EvaluationResult.from_dict(evaluate_model(store, model=model, split=split))


def metrics_artifacts(
    store: str,
    name: str,
    version: str,
    metrics: Mapping,
    *,
    title: str,
    png_file: str | None,
    key: str,
    calibration_file: str | None = None,
) -> None:
    """Publish a metrics table, the ROC plot and the reliability diagram as Prefect artifacts.

    The Brier score follows the metrics; the PNGs are embedded as data URIs.
    """
    create_table_artifact(table=metrics_rows(metrics), key=f"{key}-metrics", description=title)
    png = reg.read_model_file(store, name, version, png_file) if png_file else None
    md = metrics_markdown(
        title, metrics, png=png, png_path=f"{reg.model_path(name, version)}/{png_file}"
    )
    if "brier" in metrics:
        md += f"\n- {format_metric('brier', metrics['brier'])} (calibration; lower is better)\n"
    if calibration_file:
        cal = reg.read_model_file(store, name, version, calibration_file)
        md += (f"\n![reliability diagram]({png_bytes_uri(cal)})\n\n"
               f"`{reg.model_path(name, version)}/{calibration_file}`\n")
    create_markdown_artifact(markdown=md, key=f"{key}-roc", description=title)


def _cv_title(outer_folds: int) -> str:
    if outer_folds >= 2:
        return f"nested patient-grouped cross-validation ({outer_folds} outer folds)"
    return "patient-grouped cross-validation (selection score, optimistic)"


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@flow(name="train")
def train_flow(params: TrainParams) -> TrainResult:
    """Train a classifier on the ``train`` rows and register it; evaluate on a held-out split.

    The label keys are pseudonymised here (with the deployment's secret) and recorded in
    the store, once (a run that recorded them already passes ``stored_labels``); only
    pseudonymous keys reach the cluster, the model and the artifacts.

    Returns
    -------
    TrainResult
        The registered version with its CV metrics, and its ``evaluation`` (or None).
    """
    logger = get_run_logger()
    reg.check_name(params.model)
    labels_path = lifecycle.prepare_labels(
        params.store,
        params.labels,
        secret=lambda: load_secret(allow_demo=params.demo_secret),
        stored=params.stored_labels,
    )
    source = lifecycle.label_source_name(params.labels)
    evaluation = None
    with dask_runner(params.cluster) as runner:
        log_dashboard(runner)
        with relay(runner.client) as topic:
            result = train_task(params, labels_path, source,
                                scheduler=runner.client.scheduler.address, progress_topic=topic)
        logger.info("registered %s (%s, CV AUC %.3f)", result.ref, result.estimator, result.cv_auc)
        if params.evaluate_split:
            try:
                evaluation = runner.submit(
                    evaluate_task,
                    parameters={
                        "store": params.store,
                        "model": result.ref,
                        "split": params.evaluate_split,
                    },
                ).result()
            except ModelError as err:
                logger.info("no evaluation on %s: %s", params.evaluate_split, err)
    key = _key(params.model)
    metrics_artifacts(
        params.store,
        result.name,
        result.version,
        result.metrics,
        title=f"{result.ref}: {_cv_title(params.outer_folds)} ({result.estimator})",
        png_file="roc_cv.png",
        key=f"{key}-cv",
        calibration_file="calibration_cv.png",
    )
    if evaluation is not None:
        for line in evaluation.lines:
            logger.info("%s %s", params.evaluate_split, line)
        metrics_artifacts(
            params.store,
            result.name,
            result.version,
            evaluation.metrics,
            title=f"{result.ref}: held-out {params.evaluate_split} (n={evaluation.n})",
            png_file=f"reports/roc_{params.evaluate_split}.png" if evaluation.roc else None,
            key=f"{key}-{_key(params.evaluate_split)}",
            calibration_file=f"reports/calibration_{params.evaluate_split}.png",
        )
    return dataclasses.replace(result, evaluation=evaluation)
