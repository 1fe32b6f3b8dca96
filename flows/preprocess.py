"""Preprocess flow: run a preprocessing config over the store's series on the cluster."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from flows._runner import WRITE_LOCK, dask_runner, log_dashboard, on_cluster
from medpipe.catalog import new_run_id
from medpipe.errors import UnsupportedSourceError
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import pending_series, preprocess_series, preprocessed_group
from medpipe.progress import progress_bar
from medpipe.store import store_lock

__all__ = ["preprocess_flow", "preprocess_batch"]

#: Series per task.
BATCH = 4


@task(name="preprocess-series", retries=1)
def preprocess_batch(store: str, keys: list[str], config: PreprocessConfig) -> dict[str, str]:
    """Preprocess a batch of series; returns ``key -> output path or skip reason``."""
    out = {}
    with on_cluster():
        for key in keys:
            try:
                out[key] = preprocess_series(store, key, config=config)
            except UnsupportedSourceError as err:
                out[key] = f"skipped: {err.reason}"
    return out


@flow(name="preprocess")
def preprocess_flow(
    store: str,
    config: PreprocessConfig | None = None,
    cluster: str = "local",
    limit: int | None = None,
    batch: int = BATCH,
) -> dict[str, Any]:
    """Preprocess every series of ``store`` that has no output for ``config`` yet.

    Parameters
    ----------
    store
        Store URL or path.
    config
        Preprocessing steps; default :meth:`PreprocessConfig.default`.
    cluster
        ``local``, ``local:N``, ``tcp://host:port``, ``slurm`` or ``kubernetes``.
    limit
        Only the first ``limit`` pending series (a quick development run).
    batch
        Series per task.

    Returns
    -------
    dict
        ``group`` (the output group), ``done`` and ``skipped`` counts, and ``keys`` (the
        series preprocessed by this run).
    """
    logger = get_run_logger()
    config = config or PreprocessConfig.default()
    keys = pending_series(store, config=config)[:limit]
    group = preprocessed_group(config)
    logger.info("%d series to preprocess into %s", len(keys), group)
    results: dict[str, str] = {}
    if keys:
        with store_lock(store, WRITE_LOCK, owner=new_run_id()), dask_runner(cluster) as runner:
            log_dashboard(runner)
            futures = [
                runner.submit(
                    preprocess_batch,
                    parameters={"store": store, "keys": keys[i : i + batch], "config": config},
                )
                for i in range(0, len(keys), batch)
            ]
            with progress_bar(len(keys), "preprocess") as advance:
                for fut in as_completed(futures):
                    done = fut.result()
                    results.update(done)
                    advance(len(done))
    skipped = {k: v for k, v in results.items() if v.startswith("skipped")}
    if skipped:
        logger.info(
            "%d series skipped (not grey-level z,y,x volumes), e.g. %s: %s",
            len(skipped),
            *next(iter(skipped.items())),
        )
    done = sorted(k for k in results if k not in skipped)
    return {"group": group, "done": len(done), "skipped": len(skipped), "keys": done}
