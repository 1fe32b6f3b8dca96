"""Prefect glue shared by the flows: task runner from a cluster spec, secret lookup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging import get_run_logger
from prefect_dask import DaskTaskRunner

from medpipe.cluster import parse_spec
from medpipe.config import resolve_secret
from medpipe.errors import ConfigError
from medpipe.store import WRITE_LOCK

__all__ = [
    "dask_runner",
    "load_secret",
    "log_dashboard",
    "on_cluster",
    "SECRET_BLOCK",
    "WRITE_LOCK",
]

#: Name of the Prefect Secret block holding the pseudonymisation secret.
SECRET_BLOCK = "medpipe-secret"


def dask_runner(cluster: str = "local") -> DaskTaskRunner:
    """A :class:`DaskTaskRunner` for a medpipe cluster spec (see :mod:`medpipe.cluster`).

    Local worker processes are pointed at the flow's Prefect API, so that with the
    ephemeral API they report to the flow's server instead of each starting their own.
    """
    spec = parse_spec(cluster)
    if spec.kind == "address":
        return DaskTaskRunner(address=spec.address)
    if spec.kind == "local":
        env = {"PREFECT_API_URL": _api_url(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        kwargs = {**spec.options, "env": {k: v for k, v in env.items() if v}}
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)
    from medpipe.cluster import deploy_cluster_class  # slurm / kubernetes from deploy/

    cls, kwargs = deploy_cluster_class(spec.kind)
    return DaskTaskRunner(cluster_class=cls, cluster_kwargs=kwargs)


def _api_url() -> str | None:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return str(client.api_url)
    except Exception:  # noqa: BLE001 - no API reachable: workers use their own settings
        return None


def load_secret(*, allow_demo: bool = False) -> bytes:
    """The pseudonymisation secret: ``$MEDPIPE_SECRET``, else the Prefect Secret block.

    Falls back to the public demo secret (with a warning) only when ``allow_demo``.
    """
    try:
        return resolve_secret()
    except ConfigError:
        pass
    try:
        from prefect.blocks.system import Secret

        return Secret.load(SECRET_BLOCK).get().encode()
    except Exception:  # noqa: BLE001 - no block (or no API): fall through to the demo rule
        return resolve_secret(allow_demo=allow_demo)


def log_dashboard(runner: DaskTaskRunner) -> str | None:
    """Log (and return) the Dask dashboard link of a started runner."""
    link = getattr(runner.client, "dashboard_link", None)
    if link:
        get_run_logger().info("Dask dashboard: %s", link)
    return link


@contextmanager
def on_cluster() -> Iterator[None]:
    """Run Dask array work from inside a task on the whole cluster, without deadlock.

    Inside a DaskTaskRunner task this enters :func:`distributed.worker_client`, which
    *secedes* the task's thread from the worker's pool while the array graph runs on the
    cluster, so any number of such tasks can wait at once.  (prefect-dask's
    ``get_dask_client`` keeps the thread, and hangs once tasks outnumber threads.)
    Outside a worker it does nothing: the caller's scheduler is used.
    """
    try:
        from distributed import get_worker

        get_worker()
    except ValueError:
        yield
        return
    from distributed import worker_client

    with worker_client():
        yield
