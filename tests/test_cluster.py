"""Cluster spec parsing."""

from __future__ import annotations

import pytest

from medpipe.cluster import parse_spec
from medpipe.errors import ConfigError


def test_specs() -> None:
    assert parse_spec(None).kind == "local"
    assert parse_spec("local:3").options["n_workers"] == 3
    assert parse_spec("local").options["threads_per_worker"] == 1
    spec = parse_spec("tcp://127.0.0.1:8786")
    assert (spec.kind, spec.address) == ("address", "tcp://127.0.0.1:8786")
    assert parse_spec("slurm").kind == "slurm"


@pytest.mark.parametrize("bad", ["lokal", "local:x", "http://x"])
def test_bad_specs_fail_fast(bad: str) -> None:
    with pytest.raises(ConfigError, match="cluster spec"):
        parse_spec(bad)


def test_local_workers_get_the_lighter_monitoring_config() -> None:
    import dask
    from distributed import Client, LocalCluster

    from medpipe.cluster import LOCAL_WORKER_CONFIG, local_cluster_kwargs

    kwargs = local_cluster_kwargs(1) | {"dashboard_address": None}
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        seen = client.run(lambda: {k: dask.config.get(k) for k in LOCAL_WORKER_CONFIG})
        # the rest of the worker's configuration is intact (the nanny merges shallowly)
        loop = client.run(lambda: dask.config.get("distributed.admin.event-loop"))
    assert list(seen.values()) == [LOCAL_WORKER_CONFIG]
    assert list(loop.values()) == [dask.config.get("distributed.admin.event-loop")]
    assert dask.config.get("distributed.worker.profile.interval") != "100ms"  # not global
