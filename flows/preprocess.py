"""Preprocess flow: run a preprocessing config over the store's series on the cluster."""

from __future__ import annotations

from prefect import flow, task
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._runner import WRITE_LOCK, dask_runner, log_dashboard, on_cluster
from medpipe.catalog import new_run_id
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import pending_series, preprocessed_group
from medpipe.preprocess.apply import preprocess_batch as preprocess_series_batch
from medpipe.progress import progress_bar
from medpipe.results import PreprocessBatch, PreprocessResult
from medpipe.store import store_lock

__all__ = ["PreprocessParams", "preprocess_flow", "preprocess_batch", "BATCH"]

#: Series per task.
BATCH = 4


class PreprocessParams(BaseModel):
    """What to preprocess (rendered as a form in the Prefect UI)."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="Store path or fsspec URL")
    config: PreprocessConfig | None = Field(
        None, description="Preprocessing steps; default PreprocessConfig.default()"
    )
    cluster: str = Field("local", description="local | local:N | tcp://host:port | slurm")
    limit: int | None = Field(None, description="Only the first N pending series (dev run)")
    batch: int = Field(BATCH, ge=1, description="Series per task")

    def resolved_config(self) -> PreprocessConfig:
        """The config to run (the default when none is given)."""
        return self.config or PreprocessConfig.default()


@task(name="preprocess-series", retries=1)
def preprocess_batch(store: str, keys: list[str], config: PreprocessConfig) -> PreprocessBatch:
    """Preprocess a batch of series; unsupported ones are listed with their reason."""
    with on_cluster():
        written, unsupported = preprocess_series_batch(store, keys, config=config)
    return PreprocessBatch(written=written, unsupported=unsupported)


@flow(name="preprocess")
def preprocess_flow(params: PreprocessParams) -> PreprocessResult:
    """Preprocess every series of the store that has no output for the config yet.

    Parameters
    ----------
    params
        Store, config, cluster spec (``local``, ``local:N``, ``tcp://host:port``,
        ``slurm`` or ``kubernetes``), ``limit`` (only the first pending series) and
        ``batch`` (series per task).

    Returns
    -------
    PreprocessResult
        The output group, the series preprocessed and those left out with the reason.
    """
    logger = get_run_logger()
    config = params.resolved_config()
    store = params.store
    keys = pending_series(store, config=config)[: params.limit]
    group = preprocessed_group(config)
    logger.info("%d series to preprocess into %s", len(keys), group)
    batches: list[PreprocessBatch] = []
    if keys:
        with store_lock(store, WRITE_LOCK, owner=new_run_id()), dask_runner(params.cluster) as r:
            log_dashboard(r)
            step = params.batch
            futures = [
                r.submit(
                    preprocess_batch,
                    parameters={"store": store, "keys": keys[i : i + step], "config": config},
                )
                for i in range(0, len(keys), step)
            ]
            with progress_bar(len(keys), "preprocess") as advance:
                for fut in as_completed(futures):
                    done = fut.result()
                    batches.append(done)
                    advance(len(done.written) + len(done.unsupported))
    result = PreprocessResult.from_batches(group, batches)
    if result.unsupported:
        logger.info(
            "%d series skipped (not grey-level z,y,x volumes), e.g. %s: %s",
            len(result.unsupported),
            *next(iter(result.unsupported.items())),
        )
    return result
