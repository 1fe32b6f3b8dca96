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
    Built from ``<kind>.yaml`` in the cluster-config folder: ``$MEDPIPE_CLUSTER_CONFIG``,
    else ``deploy/cluster`` under the current directory (see ``deploy/README.md``).  The
    folder is configuration, never looked up beside the installed package.
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
    """Cluster class path and keyword arguments for ``slurm`` / ``kubernetes``.

    Reads ``<config_dir>/<kind>.yaml``, a mapping with ``cluster_class`` (the import
    path of a Dask cluster class, e.g. ``dask_jobqueue.SLURMCluster``) and
    ``cluster_kwargs`` (its keyword arguments).  A relative ``custom_cluster_spec``
    path (dask-kubernetes) is resolved against the folder of that file.

    Parameters
    ----------
    kind
        ``"slurm"``, ``"kubernetes"`` (or ``"local"``): the file name without ``.yaml``.
    config_dir
        Folder holding ``<kind>.yaml``; defaults to ``$MEDPIPE_CLUSTER_CONFIG``, else
        ``deploy/cluster`` under the current directory
        (:func:`medpipe.config.env_defaults`).

    Returns
    -------
    tuple of (str, dict)
        Import path of the cluster class and its keyword arguments.

    Raises
    ------
    ConfigError
        When the file is missing (the message names it) or malformed.
    """
    from pathlib import Path

    import yaml

    from medpipe.config import CLUSTER_CONFIG_ENV, env_defaults

    if not kind.isidentifier():
        raise ConfigError(f"cluster spec {kind!r}: not a cluster configuration name")
    base = Path(config_dir) if config_dir is not None else env_defaults().cluster_config
    path = base / f"{kind}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"cluster spec {kind!r} needs {path.absolute()}, which does not exist: set "
            f"{CLUSTER_CONFIG_ENV} to the folder holding {kind}.yaml (the checkout's "
            "deploy/cluster); see deploy/README.md"
        )
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
        kwargs["custom_cluster_spec"] = str((path.parent / spec).resolve())
    return cls, kwargs
