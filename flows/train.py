"""Train flow: grouped-CV model selection and registration on the cluster, then evaluate."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._runner import dask_runner, load_secret, log_dashboard, on_cluster
from medpipe.errors import ModelError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.metrics import METRICS, format_metric
from medpipe.models.train import evaluate_model, train_model
from medpipe.report import png_bytes_uri

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
    features: str | None = Field(
        None, description="Feature table group (features/<hash>); default from feature_config"
    )
    feature_config: FeatureConfig = Field(default_factory=FeatureConfig)
    source: str = Field("images", description="images or preprocessed/<hash>")
    estimator: Literal["svm", "logreg", "rf", "all"] = Field(
        "all", description="all: each, and their soft vote; the best CV AUC wins"
    )
    n_splits: int = Field(5, ge=2, description="Patient-grouped CV folds")
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
    params: TrainParams, labels_path: str, label_source: str, scheduler: str
) -> dict[str, Any]:
    """Grouped-CV search, refit and registration, as a client of the cluster at ``scheduler``.

    Runs in the flow's process (not on a worker): the random forest's refit uses the
    joblib Dask backend, which needs a client of its own rather than a seceded worker.
    """
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client, client.as_current():
        table = lab.read_stored_labels(params.store, labels_path)
        return train_model(
            params.store,
            name=params.model,
            features=params.features_group(),
            labels=table,
            label_source=label_source,
            estimator=params.estimator,
            n_splits=params.n_splits,
            seed=params.seed,
        )


@task(name="evaluate-model")
def evaluate_task(store: str, model: str, split: str) -> dict[str, Any]:
    """Metrics of a registered model on a held-out split."""
    with on_cluster():
        out = evaluate_model(store, model=model, split=split)
    out.pop("roc_png", None)  # bytes: read from the store for the artifact instead
    return out


def metrics_artifacts(
    store: str,
    name: str,
    version: str,
    metrics: dict,
    *,
    title: str,
    png_file: str | None,
    key: str,
) -> None:
    """Publish a metrics table and the ROC plot (embedded PNG) as Prefect artifacts."""
    rows = [
        {
            "metric": k,
            "value": round(metrics[k]["value"], 4),
            "ci_low": round(metrics[k]["ci_low"], 4),
            "ci_high": round(metrics[k]["ci_high"], 4),
        }
        for k in METRICS
    ]
    create_table_artifact(table=rows, key=f"{key}-metrics", description=title)
    lines = "\n".join(f"- {format_metric(k, metrics[k])}" for k in METRICS)
    md = f"### {title}\n\n{lines}\n"
    if png_file:
        png = reg.read_model_file(store, name, version, png_file)
        md += (
            f"\n![ROC]({png_bytes_uri(png)})\n\n"
            f"`{reg.model_path(name, version)}/{png_file}`\n"
        )
    create_markdown_artifact(markdown=md, key=f"{key}-roc", description=title)


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@flow(name="train")
def train_flow(params: TrainParams) -> dict[str, Any]:
    """Train a classifier on the ``train`` rows and register it; evaluate on a held-out split.

    The label keys are pseudonymised here (with the deployment's secret) and recorded in
    the store; only pseudonymous keys reach the cluster, the model and the artifacts.

    Returns
    -------
    dict
        ``train`` (name, version, estimator, CV metrics) and ``evaluation`` (or None).
    """
    logger = get_run_logger()
    reg.check_name(params.model)
    secret = load_secret(allow_demo=params.demo_secret)
    table = lab.read_labels(params.labels, secret=secret)
    labels_path = lab.write_labels(params.store, table)
    source = params.labels.replace("\\", "/").rsplit("/", 1)[-1]
    with dask_runner(params.cluster) as runner:
        log_dashboard(runner)
        result = train_task(params, labels_path, source, scheduler=runner.client.scheduler.address)
        ref = f"{result['name']}:{result['version']}"
        logger.info("registered %s (%s, CV AUC %.3f)", ref, result["estimator"], result["cv_auc"])
        evaluation = None
        if params.evaluate_split:
            try:
                evaluation = runner.submit(
                    evaluate_task,
                    parameters={
                        "store": params.store,
                        "model": ref,
                        "split": params.evaluate_split,
                    },
                ).result()
            except ModelError as err:
                logger.info("no evaluation on %s: %s", params.evaluate_split, err)
    key = _key(params.model)
    metrics_artifacts(
        params.store,
        result["name"],
        result["version"],
        result["metrics"],
        title=f"{ref}: patient-grouped cross-validation ({result['estimator']})",
        png_file="roc_cv.png",
        key=f"{key}-cv",
    )
    if evaluation is not None:
        for line in evaluation["lines"]:
            logger.info("%s %s", params.evaluate_split, line)
        metrics_artifacts(
            params.store,
            result["name"],
            result["version"],
            evaluation["metrics"],
            title=f"{ref}: held-out {params.evaluate_split} (n={evaluation['n']})",
            png_file=f"reports/roc_{params.evaluate_split}.png" if evaluation["roc"] else None,
            key=f"{key}-{_key(params.evaluate_split)}",
        )
    return {"train": result, "evaluation": evaluation}
