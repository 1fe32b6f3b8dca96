"""Fault tolerance with real processes: a worker SIGKILLed mid-run, a flow SIGKILLed mid-ingest."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flows.features import FeatureParams, features_flow
from flows.ingest import IngestParams, ingest_flow
from flows.preprocess import PreprocessParams, preprocess_flow
from medpipe import catalog, ingest, store
from medpipe.features import FeatureConfig
from medpipe.features.dataset import open_features
from medpipe.preprocess import ClosingStep, GaussianStep, MedianStep, PreprocessConfig
from medpipe.sample import build_bundled_archive

SECRET = b"test-secret"
BIN = Path(sys.executable).parent
#: Heavier than the default so the run lasts long enough to be interrupted.
CHAIN = PreprocessConfig(
    steps=(GaussianStep(sigma_mm=1.0), MedianStep(radius_mm=1.5), ClosingStep(radius_mm=2.0))
)
FEATURES = FeatureConfig(families=("firstorder", "glcm"))

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _image_hashes(out: str, group: str) -> dict[str, str]:
    return {
        p.rsplit("/", 1)[-1]: _digest(store.open_image(out, p).values)
        for p in store.list_groups(out, group)
    }


def _feature_hash(out: str, group: str) -> dict[str, str]:
    table = open_features(out, group)
    return {
        str(s): _digest(table["features"].sel(sample=s).values)
        for s in table["sample"].values.tolist()
    }


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    archive = build_bundled_archive(root / "archive")
    ingest.ingest_archive(str(archive), str(root / "clean.zarr"), secret=SECRET)
    return root


def _start_dask(port: int, n_workers: int, log: Path) -> tuple[subprocess.Popen, list]:
    fh = log.open("ab")
    sched = subprocess.Popen(
        [BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=fh,
        stderr=fh,
        start_new_session=True,
    )
    workers = [
        subprocess.Popen(
            [
                BIN / "dask",
                "worker",
                f"tcp://127.0.0.1:{port}",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--memory-limit",
                "2GB",
            ],
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )
        for _ in range(n_workers)
    ]
    from distributed import Client

    with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
        client.wait_for_workers(n_workers, timeout=60)
    return sched, workers


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def test_worker_killed_mid_run(ingested: Path) -> None:
    clean = str(ingested / "clean.zarr")
    faulty = str(ingested / "faulty.zarr")
    shutil.copytree(clean, faulty)
    # the reference: the same flows on an undisturbed local cluster
    pre = preprocess_flow(PreprocessParams(store=clean, config=CHAIN, cluster="local:2"))
    feats = features_flow(
        FeatureParams(store=clean, config=FEATURES, source=pre.group, cluster="local:2")
    )

    port = _free_port()
    sched, workers = _start_dask(port, 2, ingested / "dask.log")
    try:
        box: dict = {}

        def run() -> None:
            try:
                box["pre"] = preprocess_flow(
                    PreprocessParams(
                        store=faulty, config=CHAIN, cluster=f"tcp://127.0.0.1:{port}", batch=1
                    )
                )
                box["feat"] = features_flow(
                    FeatureParams(
                        store=faulty,
                        config=FEATURES,
                        source=box["pre"].group,
                        cluster=f"tcp://127.0.0.1:{port}",
                    )
                )
            except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
                box["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 300
        while not store.list_groups(faulty, pre.group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.list_groups(faulty, pre.group), "the run never started writing"
        workers[0].send_signal(signal.SIGKILL)  # mid-run: some series are written, most not
        killed_at = len(store.list_groups(faulty, pre.group))
        thread.join(timeout=600)
        assert not thread.is_alive(), "the flow did not finish after a worker was killed"
        if "error" in box:
            raise box["error"]
        assert workers[0].wait(timeout=10) == -signal.SIGKILL
        assert killed_at < pre.done, "the worker was killed after the run had finished"
    finally:
        _stop(*workers, sched)
    assert box["pre"].done + killed_at >= pre.done
    assert _image_hashes(faulty, pre.group) == _image_hashes(clean, pre.group)
    assert _feature_hash(faulty, box["feat"].group) == _feature_hash(clean, feats.group)


def test_flow_killed_mid_ingest_then_rerun(ingested: Path, tmp_path: Path) -> None:
    archive = ingested / "archive"
    clean = str(ingested / "clean.zarr")
    crashed = str(tmp_path / "crashed.zarr")
    env = {
        **os.environ,
        "MEDPIPE_SECRET": SECRET.decode(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # the child runs its own embedded server
    log = (tmp_path / "ingest.log").open("wb")
    proc = subprocess.Popen(
        [BIN / "medpipe", "ingest", str(archive), crashed, "--cluster", "local:1"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    parts = Path(crashed) / "catalog"
    deadline = time.monotonic() + 300
    # wait until some series are written and catalogued, but not all
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            parts.exists()
            and len(list(parts.glob("part-*.parquet"))) >= 2
            and (store.list_groups(crashed, "images"))
        ):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(store.list_groups(crashed, "images"))
    assert done_before < len(store.list_groups(clean, "images"))

    leftovers = [p for p in (Path(crashed) / "images").iterdir() if p.name.startswith(".tmp")]
    again = ingest_flow(IngestParams(archive=str(archive), store=crashed, cluster="local:1"))
    assert again.new > 0  # the rerun finishes what the crash left
    cur_crashed, cur_clean = catalog.current(crashed), catalog.current(clean)
    assert sorted(cur_crashed["path"]) == sorted(cur_clean["path"])  # nothing missing
    assert dict(zip(cur_crashed["path"], cur_crashed["status"], strict=True)) == dict(
        zip(cur_clean["path"], cur_clean["status"], strict=True)
    )
    assert not any(p.exists() for p in leftovers)  # half-written series were cleaned up
    assert not [p for p in (Path(crashed) / "images").iterdir() if p.name.startswith(".")]
    assert _image_hashes(crashed, "images") == _image_hashes(clean, "images")  # no duplicates
