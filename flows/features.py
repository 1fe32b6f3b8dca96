"""Feature flow: compute the feature table of the store's series on the cluster."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.logging import get_run_logger

from flows._runner import WRITE_LOCK, dask_runner, log_dashboard, on_cluster
from medpipe.catalog import new_run_id
from medpipe.features import FeatureConfig
from medpipe.features.dataset import update_features
from medpipe.store import store_lock

__all__ = ["features_flow", "compute_features_table"]


@task(name="feature-table", retries=1)
def compute_features_table(store: str, config: FeatureConfig, source: str) -> dict[str, Any]:
    """Bring the feature table up to date (new or re-ingested series only)."""
    with on_cluster():
        return update_features(store, config=config, source=source)


@flow(name="features")
def features_flow(
    store: str, config: FeatureConfig | None = None, source: str = "images", cluster: str = "local"
) -> dict[str, Any]:
    """Extract features for new or re-ingested series (one sample per series and ROI).

    Parameters
    ----------
    store
        Store URL or path.
    config
        Feature families and discretisation; default :class:`FeatureConfig`.
    source
        ``images`` (as ingested, e.g. HU) or ``preprocessed/<hash>``.
    cluster
        ``local``, ``local:N``, ``tcp://host:port``, ``slurm`` or ``kubernetes``.

    Returns
    -------
    dict
        ``group`` (the table), ``computed`` (series computed) and ``kept`` (samples kept).
    """
    config = config or FeatureConfig()
    with store_lock(store, WRITE_LOCK, owner=new_run_id()), dask_runner(cluster) as runner:
        log_dashboard(runner)
        result = runner.submit(
            compute_features_table, parameters={"store": store, "config": config, "source": source}
        ).result()
    get_run_logger().info(
        "feature table %s: %d series computed, %d samples kept",
        result["group"],
        result["computed"],
        result["kept"],
    )
    return result
