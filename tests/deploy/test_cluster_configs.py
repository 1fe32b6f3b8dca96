"""deploy/cluster/*.yaml: each builds (or binds to) its Dask cluster class.

SLURM: ``dask_jobqueue.SLURMCluster`` is built from the file with a loopback scheduler
and no workers, so nothing is submitted and ``sbatch`` is not needed; its job script
is checked against the configured values, and (slow) the worker command in it is
started for real against that scheduler.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from dask.utils import parse_bytes
from distributed import LocalCluster

from medpipe.cluster import deploy_cluster_class, local_cluster_kwargs
from medpipe.errors import ConfigError

from .conftest import DEPLOY

REPO = DEPLOY.parent
CLUSTER = DEPLOY / "cluster"


def _slurm(tmp_path: Path, **override: Any):
    from dask_jobqueue import SLURMCluster

    cls, kwargs = deploy_cluster_class("slurm", config_dir=CLUSTER)
    assert cls == "dask_jobqueue.SLURMCluster"
    kwargs.update(
        n_workers=0,  # build only: submit no job
        log_directory=str(tmp_path / "logs"),
        scheduler_options={"host": "127.0.0.1", "port": 0, "dashboard_address": ":0"},
        **override,
    )
    return SLURMCluster(**kwargs), kwargs


def test_slurm_job_script_has_the_directives(tmp_path: Path) -> None:
    _, cfg = deploy_cluster_class("slurm", config_dir=CLUSTER)
    cluster, _ = _slurm(tmp_path)
    with cluster:
        assert cluster.workers == {}  # nothing submitted
        script = cluster.job_script()
    directives = re.findall(r"^#SBATCH (.+)$", script, flags=re.M)
    assert f"-p {cfg['queue']}" in directives
    assert f"--cpus-per-task={cfg['cores']}" in directives
    assert f"-t {cfg['walltime']}" in directives
    (mem,) = [d for d in directives if d.startswith("--mem=")]
    # SLURM size suffixes are binary: 32G is 32 GiB
    assert parse_bytes(mem.removeprefix("--mem=") + "iB") == pytest.approx(
        parse_bytes(cfg["memory"]), rel=0.05
    )
    for extra in cfg["job_extra_directives"]:
        assert extra in directives
    command = script.strip().splitlines()[-1]
    args = shlex.split(command)
    assert args[args.index("--nworkers") + 1] == str(cfg["processes"])
    assert args[args.index("--nthreads") + 1] == str(cfg["cores"] // cfg["processes"])
    assert "--local-directory" in args
    for prologue in cfg["job_script_prologue"]:
        assert prologue in script.splitlines()


@pytest.mark.slow
def test_slurm_worker_command_starts_workers(tmp_path: Path) -> None:
    """Run the generated job script's body (as SLURM would) against the scheduler."""
    cluster, cfg = _slurm(tmp_path)
    with cluster:
        script = tmp_path / "job.sh"
        script.write_text(cluster.job_script())
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while len(cluster.scheduler.workers) < cfg["processes"]:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "workers did not connect"
                time.sleep(0.2)
            infos = list(cluster.scheduler.workers.values())
            assert {w.nthreads for w in infos} == {cfg["cores"] // cfg["processes"]}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_local_config_matches_local_cluster_kwargs() -> None:
    cls, kwargs = deploy_cluster_class("local", config_dir=CLUSTER)
    assert cls == "distributed.LocalCluster"
    inspect.signature(LocalCluster).bind(**kwargs)
    code = local_cluster_kwargs()
    assert {k: code[k] for k in kwargs} == kwargs


def test_kubernetes_config_binds_to_kubecluster() -> None:
    from dask_kubernetes.operator import KubeCluster

    cls, kwargs = deploy_cluster_class("kubernetes", config_dir=CLUSTER)
    assert cls == "dask_kubernetes.operator.KubeCluster"
    inspect.signature(KubeCluster).bind(**kwargs)
    spec = Path(kwargs["custom_cluster_spec"])
    assert spec.is_absolute() and spec == DEPLOY / "k8s" / "daskcluster.yaml"


def test_malformed_config_fails_fast(tmp_path: Path) -> None:
    (tmp_path / "slurm.yaml").write_text("cluster_kwargs: {cores: 2}\n")
    with pytest.raises(ConfigError, match="cluster_class"):
        deploy_cluster_class("slurm", config_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs"):
        deploy_cluster_class("kubernetes", config_dir=tmp_path)
    with pytest.raises(ConfigError):
        deploy_cluster_class("../etc", config_dir=tmp_path)
