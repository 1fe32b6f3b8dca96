"""Score flow: probabilities for every sample a model version has not scored yet."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._runner import dask_runner, log_dashboard, on_cluster
from medpipe.models.train import score_model
from medpipe.progress import relay, remote_report
from medpipe.report import score_markdown
from medpipe.results import ScoreResult

__all__ = ["ScoreParams", "score_flow", "score_task"]


class ScoreParams(BaseModel):
    """What to score (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Store path or fsspec URL")
    model: str = Field(description="NAME or NAME:VERSION (default latest)")
    features: str | None = Field(None, description="Feature table; default the model's")
    limit: int | None = Field(None, description="Only the first N unscored samples (dev run)")
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")


@task(name="score-model")
def score_task(params: ScoreParams, progress_topic: str | None = None) -> ScoreResult:
    """Score the pending samples block-wise on the whole cluster (reported per block)."""
    with on_cluster(), remote_report(progress_topic) as report:
        out = score_model(
            params.store, model=params.model, features=params.features, limit=params.limit,
            progress=report,
        )
    return ScoreResult.from_dict(out)


@flow(name="score")
def score_flow(params: ScoreParams) -> ScoreResult:
    """Write ``scores/<name>/<version>`` for every sample with features and no score yet.

    Returns
    -------
    ScoreResult
        ``group``, ``scored`` (this run) and ``total``.
    """
    with dask_runner(params.cluster) as runner:
        log_dashboard(runner)
        with relay(runner.client) as topic:
            result = runner.submit(
                score_task, parameters={"params": params, "progress_topic": topic}
            ).result()
    get_run_logger().info(
        "scored %d new samples (%d in %s)", result.scored, result.total, result.group
    )
    create_markdown_artifact(
        markdown=score_markdown(params.model, result),
        key="score-summary",
        description=f"medpipe score {params.model}",
    )
    return result
