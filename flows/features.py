"""Feature flow: compute the feature table of the store's series on the cluster."""

from __future__ import annotations

from prefect import flow, task
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._runner import WRITE_LOCK, dask_runner, log_dashboard, on_cluster
from medpipe.catalog import new_run_id
from medpipe.features import FeatureConfig
from medpipe.features.dataset import update_features
from medpipe.progress import relay, remote_report
from medpipe.results import FeatureResult
from medpipe.store import store_lock

__all__ = ["FeatureParams", "features_flow", "compute_features_table"]


class FeatureParams(BaseModel):
    """Which features to compute (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Store path or fsspec URL")
    config: FeatureConfig = Field(default_factory=FeatureConfig)
    source: str = Field("images", description="images or preprocessed/<hash>")
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")


@task(name="feature-table", retries=1)
def compute_features_table(
    store: str, config: FeatureConfig, source: str, progress_topic: str | None = None
) -> FeatureResult:
    """Bring the feature table up to date (new or re-ingested series only).

    Each sample (series and ROI) computed is reported to ``progress_topic``'s relay.
    """
    with on_cluster(), remote_report(progress_topic) as report:
        out = update_features(store, config=config, source=source, progress=report)
    return FeatureResult.from_update(out)


@flow(name="features")
def features_flow(params: FeatureParams) -> FeatureResult:
    """Extract features for new or re-ingested series (one sample per series and ROI).

    Parameters
    ----------
    params
        Store, feature config (families and discretisation), source (``images``, as
        ingested, or ``preprocessed/<hash>``) and cluster spec.

    Returns
    -------
    FeatureResult
        The table, the series computed and the samples kept.
    """
    store = params.store
    with store_lock(store, WRITE_LOCK, owner=new_run_id()), dask_runner(params.cluster) as runner:
        log_dashboard(runner)
        with relay(runner.client) as topic:
            result = runner.submit(
                compute_features_table,
                parameters={"store": store, "config": params.config, "source": params.source,
                            "progress_topic": topic},
            ).result()
    get_run_logger().info(
        "feature table %s: %d series computed, %d samples kept",
        result.group,
        result.computed,
        result.kept,
    )
    return result
