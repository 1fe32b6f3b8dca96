"""Flow tests run against a real (temporary) Prefect server and real Dask clusters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

SECRET = "test-secret"  # tests/conftest.py sets MEDPIPE_SECRET to this


@pytest.fixture(scope="session", autouse=True)
def prefect_server(prefect_test_api: str) -> Iterator[str]:
    """The session's temporary Prefect API (SQLite) for every flow test."""
    yield prefect_test_api


@pytest.fixture(scope="module")
def flow_cluster(prefect_server: str) -> Iterator[str]:
    """A real 2-worker ``LocalCluster`` shared by a module's flows; yields its address.

    For modules where no test kills a worker: starting a cluster per flow run costs two
    worker processes' start-up (imports of dask, medpipe, prefect) each time.  The
    workers are pointed at the session's Prefect API, as ``dask_runner`` points the
    workers of a ``local`` spec at the flow's API.
    """
    from distributed import LocalCluster

    env = {"PREFECT_API_URL": prefect_server, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "MEDPIPE_SECRET": SECRET}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster:
        yield cluster.scheduler_address
