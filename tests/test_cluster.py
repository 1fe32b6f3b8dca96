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


def _write(folder, kind: str, text: str) -> None:  # noqa: ANN001
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{kind}.yaml").write_text(text)


def test_cluster_config_folder_comes_from_the_environment(
    tmp_path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    from medpipe.cluster import deploy_cluster_class

    conf = tmp_path / "site" / "cluster"
    _write(conf, "slurm", "cluster_class: dask_jobqueue.SLURMCluster\n"
                          "cluster_kwargs: {cores: 4}\n")
    _write(conf, "kubernetes", "cluster_class: dask_kubernetes.operator.KubeCluster\n"
                               "cluster_kwargs: {custom_cluster_spec: ../k8s/dc.yaml}\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not a checkout: no deploy/ here
    monkeypatch.setenv("MEDPIPE_CLUSTER_CONFIG", str(conf))
    assert deploy_cluster_class("slurm") == ("dask_jobqueue.SLURMCluster", {"cores": 4})
    _, kwargs = deploy_cluster_class("kubernetes")
    assert kwargs["custom_cluster_spec"] == str(tmp_path / "site" / "k8s" / "dc.yaml")
    # an explicit folder wins over the environment
    other = tmp_path / "other"
    _write(other, "slurm", "cluster_class: x.Y\n")
    assert deploy_cluster_class("slurm", config_dir=other) == ("x.Y", {})


def test_missing_cluster_config_names_the_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    from medpipe.cluster import deploy_cluster_class

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDPIPE_CLUSTER_CONFIG", raising=False)
    with pytest.raises(ConfigError) as err:
        deploy_cluster_class("slurm")
    msg = str(err.value)
    assert str(tmp_path / "deploy" / "cluster" / "slurm.yaml") in msg
    assert "MEDPIPE_CLUSTER_CONFIG" in msg
