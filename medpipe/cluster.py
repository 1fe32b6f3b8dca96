"""Cluster selection: turn a ``--cluster`` spec into Dask cluster settings.

Specs
-----
``local`` (default)
    A :class:`distributed.LocalCluster` sized to this machine: one single-threaded
    worker process per core (decoding and filters are GIL-bound or already
    multi-threaded, so processes scale best), memory split evenly.
``tcp://host:port``
    An existing Dask scheduler.
``slurm`` / ``kubernetes``
    Built from the configuration in ``deploy/`` (see ``deploy/README.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from medpipe.errors import ConfigError

__all__ = [
    "ClusterSpec",
    "LOCAL_WORKER_CONFIG",
    "parse_spec",
    "local_cluster_kwargs",
    "deploy_cluster_class",
]

_KINDS = ("local", "address", "slurm", "kubernetes")


#: Dask settings of the local workers (passed to each worker process by its nanny).
#: Dask's defaults wake every worker every 10-20 ms to sample its stack and watch its
#: event loop: about 3 % of a core per idle worker, which the tasks lose on a laptop
#: where workers and cores are one to one.  Sampling at 100 ms keeps the dashboard's
#: Profile page useful at a tenth of the cost (see ``bench/train.py``).
LOCAL_WORKER_CONFIG: dict[str, str] = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.profile.cycle": "10s",
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster spec.

    Attributes
    ----------
    kind
        ``"local"``, ``"address"``, ``"slurm"`` or ``"kubernetes"``.
    address
        Scheduler address for ``kind == "address"``.
    options
        Extra keyword arguments for the cluster class (e.g. ``n_workers``).
    """

    kind: str
    address: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_spec(spec: str | None) -> ClusterSpec:
    """Parse a cluster spec string.

    Parameters
    ----------
    spec
        ``local``, ``local:N`` (N workers), ``tcp://host:port``, ``slurm`` or
        ``kubernetes``; ``None`` or ``""`` means ``local``.

    Returns
    -------
    ClusterSpec

    Raises
    ------
    ConfigError
        For anything else.
    """
    text = (spec or "local").strip()
    if text.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        return ClusterSpec("address", address=text)
    name, _, arg = text.partition(":")
    if name == "local":
        if arg and not arg.isdigit():
            raise ConfigError(f"cluster spec {text!r}: 'local:N' needs a whole number of workers")
        return ClusterSpec("local", options=local_cluster_kwargs(int(arg) if arg else None))
    if name in ("slurm", "kubernetes"):
        return ClusterSpec(name)
    raise ConfigError(
        f"unknown cluster spec {text!r}: use 'local', 'local:N', 'tcp://host:port', "
        "'slurm' or 'kubernetes'"
    )


def local_cluster_kwargs(n_workers: int | None = None) -> dict[str, Any]:
    """Keyword arguments for a :class:`distributed.LocalCluster` sized to this machine.

    Parameters
    ----------
    n_workers
        Worker processes; defaults to the number of usable cores.

    Returns
    -------
    dict
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = n_workers or max(1, cores or 1)
    return {
        "n_workers": n,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
        "config": dict(LOCAL_WORKER_CONFIG),
    }


def deploy_cluster_class(
    kind: str, *, config_dir: str | os.PathLike[str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Cluster class path and keyword arguments for ``slurm`` / ``kubernetes`` from ``deploy/``.

    Reads ``<config_dir>/cluster/<kind>.yaml``, a mapping with ``cluster_class`` (the
    import path of a Dask cluster class, e.g. ``dask_jobqueue.SLURMCluster``) and
    ``cluster_kwargs`` (its keyword arguments).  A relative ``custom_cluster_spec``
    path (dask-kubernetes) is resolved against ``config_dir``.

    Parameters
    ----------
    kind
        ``"slurm"``, ``"kubernetes"`` (or ``"local"``): the file name without ``.yaml``.
    config_dir
        Folder holding ``cluster/<kind>.yaml``; defaults to the ``deploy/`` folder of
        the source checkout.

    Returns
    -------
    tuple of (str, dict)
        Import path of the cluster class and its keyword arguments.

    Raises
    ------
    ConfigError
        When the file is missing or malformed.
    """
    from pathlib import Path

    import yaml

    if not kind.isidentifier():
        raise ConfigError(f"cluster spec {kind!r}: not a deploy/cluster/ configuration name")
    base = Path(config_dir) if config_dir else Path(__file__).resolve().parents[1] / "deploy"
    path = base / "cluster" / f"{kind}.yaml"
    if not path.is_file():
        raise ConfigError(f"cluster spec {kind!r} needs {path}; see deploy/README.md")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("cluster_class"), str):
        raise ConfigError(f"{path}: needs a 'cluster_class' string")
    cls = doc["cluster_class"]
    if "." not in cls:
        raise ConfigError(f"{path}: cluster_class {cls!r} must be a dotted import path")
    kwargs = doc.get("cluster_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{path}: 'cluster_kwargs' must be a mapping")
    kwargs = dict(kwargs)
    spec = kwargs.get("custom_cluster_spec")
    if isinstance(spec, str) and not Path(spec).is_absolute():
        kwargs["custom_cluster_spec"] = str(base / spec)
    return cls, kwargs
