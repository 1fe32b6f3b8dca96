"""The preprocess and feature flows on a real SLURM cluster (``make slurm``).

``make slurm`` installs Debian's slurm-wlm and munge when missing and starts a one-node
cluster on this machine; where it cannot, the test fails with its output (it never
skips).  The Dask workers are real SLURM batch jobs submitted by dask-jobqueue from
``deploy/cluster/slurm.yaml`` (sized down to this 2-core machine, on loopback).  The
results must equal a ``local`` run's array for array, also when one worker job is
cancelled with ``scancel`` while it runs a task.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml

from medpipe import ingest, store
from medpipe.features import FeatureConfig

REPO = Path(__file__).resolve().parents[2]
SECRET = b"slurm-test-secret"
FEATURES = FeatureConfig(families=("firstorder", "glcm"))

pytestmark = pytest.mark.timeout(900)


def _make(target: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), target],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A running one-node SLURM (``make slurm``), stopped at the end (``make slurm-stop``)."""
    if shutil.which("make") is None:
        pytest.fail("make slurm: 'make' is not installed")
    done = _make("slurm", timeout=900)
    if done.returncode != 0:
        pytest.fail(f"make slurm failed (exit {done.returncode}):\n"
                    f"{(done.stdout + done.stderr)[-4000:]}")
    try:
        yield
    finally:
        _make("slurm-stop", timeout=120)


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect API whose URL the worker jobs inherit (sbatch --export=ALL)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "MEDPIPE_CLUSTER_CONFIG")}
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        url = str(PREFECT_API_URL.value())
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _archive(root: Path) -> Path:
    """Six single-file series: pydicom's CT and MR, each with two re-UID'd copies."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    root.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        src = get_testdata_file(name)
        shutil.copy(src, root / name)
        for copy in range(2):
            ds = pydicom.dcmread(src)
            ds.SeriesInstanceUID = generate_uid()
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(root / f"copy{copy}-{name}")
    return root


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("slurm")
    out = str(root / "store.zarr")
    summary = ingest.ingest_archive(str(_archive(root / "archive")), out, secret=SECRET)
    assert summary.series_ingested == 6
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_config(folder: Path, port: int) -> Path:
    """deploy/cluster/slurm.yaml, sized to this machine: 2 jobs of 1 core, on loopback."""
    doc = yaml.safe_load((REPO / "deploy" / "cluster" / "slurm.yaml").read_text())
    kw = doc["cluster_kwargs"]
    kw.update(
        n_workers=2, cores=1, processes=1, memory="2GiB", walltime="00:20:00",
        local_directory=str(folder / "spill"), log_directory=str(folder / "logs"),
        job_script_prologue=[], python=sys.executable, interface="lo",
        scheduler_options={"port": port, "dashboard_address": "127.0.0.1:0"},
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slurm.yaml").write_text(yaml.safe_dump(doc))
    return folder


def _run(src: str, dst: str, cluster: str) -> tuple[Any, Any]:
    from flows.features import FeatureParams, features_flow
    from flows.preprocess import PreprocessParams, preprocess_flow

    shutil.copytree(src, dst)
    pre = preprocess_flow(PreprocessParams(store=dst, cluster=cluster, batch=1))
    feats = features_flow(
        FeatureParams(store=dst, config=FEATURES, source=pre.group, cluster=cluster)
    )
    return pre, feats


def _hashes(out: str, pre: Any, feats: Any) -> dict[str, str]:
    """SHA-256 of every preprocessed array and of the feature table, by name."""
    found = {}
    for path in store.list_groups(out, pre.group):
        arr = np.ascontiguousarray(store.open_image(out, path).values)
        found[path] = hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()
    table = xr.open_zarr(f"{out}/{feats.group}", consolidated=False).sortby("sample")
    values = np.ascontiguousarray(table["features"].values)
    ids = "|".join(map(str, table["sample"].values)) + "|".join(map(str, table["feature"].values))
    found[feats.group] = hashlib.sha256(ids.encode() + values.tobytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def local_result(ingested: str, prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    out = str(tmp_path_factory.mktemp("local") / "store.zarr")
    pre, feats = _run(ingested, out, "local:1")
    assert pre.done == 6 and feats.group
    return _hashes(out, pre, feats)


def _squeue() -> list[str]:
    got = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
    return got.stdout.split("\n") if got.returncode == 0 else []


def test_flows_on_slurm_equal_a_local_run(
    slurm: None, ingested: str, local_result: dict[str, str], tmp_path: Path
) -> None:
    os.environ["MEDPIPE_CLUSTER_CONFIG"] = str(_cluster_config(tmp_path / "cfg", _free_port()))
    pre, feats = _run(ingested, str(tmp_path / "store.zarr"), "slurm")
    assert _hashes(str(tmp_path / "store.zarr"), pre, feats) == local_result
    logs = list((tmp_path / "cfg" / "logs").glob("*.err"))
    assert len(logs) >= 2, "the workers did not run as SLURM jobs"  # one log per job


def _cancel_a_busy_worker(port: int, stop: threading.Event, seen: dict[str, Any]) -> None:
    """Once a worker runs a task, ``scancel`` that worker's job."""
    from distributed import Client

    client = None
    deadline = time.monotonic() + 600
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if client is None:
                try:
                    client = Client(f"tcp://127.0.0.1:{port}", timeout=2, set_as_default=False)
                except OSError:
                    time.sleep(0.2)
                    continue
            try:
                busy = [a for a, keys in client.processing().items() if keys]
                workers = len(client.scheduler_info()["workers"])
            except OSError:  # that flow's scheduler closed: the next flow's comes up
                client.close()
                client = None
                continue
            # a busy worker, even if the second job is still queued: SLURM starts that
            # one on the CPU the cancelled job frees, and it takes over the lost tasks
            if workers >= 1 and busy:
                job = client.run(lambda: os.environ.get("SLURM_JOB_ID"), workers=busy[:1])
                seen["job"] = job[busy[0]]
                seen["tasks"] = client.processing()[busy[0]]
                seen["scancel"] = subprocess.run(
                    ["scancel", str(seen["job"])], capture_output=True, text=True
                ).returncode
                return
            time.sleep(0.05)
    except Exception as err:  # noqa: BLE001 - reported by the test
        seen["error"] = repr(err)
    finally:
        if client is not None:
            client.close()


def test_a_cancelled_worker_job_does_not_change_the_result(
    slurm: None, ingested: str, local_result: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    os.environ["MEDPIPE_CLUSTER_CONFIG"] = str(_cluster_config(tmp_path / "cfg", port))
    seen: dict[str, Any] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_cancel_a_busy_worker, args=(port, stop, seen))
    watcher.start()
    try:
        pre, feats = _run(ingested, str(tmp_path / "store.zarr"), "slurm")
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert "error" not in seen, seen
    assert seen.get("job"), "the run ended before a busy worker job could be cancelled"
    assert seen["scancel"] == 0 and seen["tasks"]
    assert not any(line.startswith(f"{seen['job']} ") for line in _squeue())
    assert _hashes(str(tmp_path / "store.zarr"), pre, feats) == local_result
