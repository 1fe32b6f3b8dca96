"""Feature flow: compute the feature table of the store's series on the cluster."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.logging import get_run_logger

from flows._runner import dask_runner, log_dashboard, on_cluster
from medpipe.features import FeatureConfig
from medpipe.features.dataset import feature_table, features_group, write_features

__all__ = ["features_flow", "compute_features_table"]


@task(name="feature-table", retries=1)
def compute_features_table(store: str, config: FeatureConfig, source: str) -> str:
    """Compute the feature table of every series under ``source`` and store it."""
    with on_cluster():
        table = feature_table(store, config=config, source=source)
        return write_features(table, store=store, path=features_group(config, source=source))


@flow(name="features")
def features_flow(
    store: str, config: FeatureConfig | None = None, source: str = "images", cluster: str = "local"
) -> dict[str, Any]:
    """Extract features for every series (one sample per series and ROI).

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
        ``group``: where the table was written.
    """
    config = config or FeatureConfig()
    with dask_runner(cluster) as runner:
        log_dashboard(runner)
        group = runner.submit(
            compute_features_table, parameters={"store": store, "config": config, "source": source}
        ).result()
    get_run_logger().info("feature table written to %s", group)
    return {"group": group}
