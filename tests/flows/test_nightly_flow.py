"""The nightly flow: incremental reruns, QA report, artifacts, and no two runs at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from flows.nightly import NightlyParams, nightly_flow
from medpipe.errors import ConfigError, StoreLockedError
from medpipe.nightly import NIGHTLY_MODEL, idle_result

BIN = Path(sys.executable).parent


def _archive(root: Path) -> Path:
    import shutil

    import nibabel.testing

    archive = root / "archive"
    archive.mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_truncated.dcm"):
        shutil.copy(get_testdata_file(name), archive / name)
    shutil.copy(Path(nibabel.testing.data_path) / "anatomical.nii", archive / "anatomical.nii")
    return archive


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {a.key for a in client.read_artifacts()}


def test_nightly_runs_twice_incrementally(tmp_path: Path, flow_cluster: str) -> None:
    archive, out = _archive(tmp_path), str(tmp_path / "store.zarr")
    first = nightly_flow(NightlyParams(archive=str(archive), store=out, cluster=flow_cluster))
    assert first.ingest.series_ingested == 4 and first.ingest.quarantined == 1
    assert first.preprocess.done == 4 and first.features.computed >= 4
    assert first.preprocess.skipped is first.features.skipped is None
    assert first.model.note == "no model registered yet (give --labels to train one)"
    page = (Path(out) / first.report).read_text()
    # quarantined files by reason only (no archive path); figures are PNG files beside it
    assert "MR_truncated.dcm" not in page and page.count(".png'") >= 4
    assert re.search(r"PHI audit: 0 hits over \d+ values in \d+ files", page)
    assert {"nightly-summary", "nightly-qa", "nightly-qa-report", "ingest-summary"} <= (
        _artifact_keys()
    )

    second = nightly_flow(NightlyParams(archive=str(archive), store=out, cluster="local:1"))
    assert second.ingest.unchanged == second.ingest.scanned == 5
    assert second.ingest.series_ingested == 0
    assert second.preprocess.done == 0 and second.features.computed == 0
    assert second.features.skipped == "nothing new"  # decided from metadata: no stage ran
    assert second.report is None  # a night with nothing to do writes no report
    assert [p.name for p in (Path(out) / "reports").iterdir() if p.is_dir()] == [first.run_id]

    # the same decision before Prefect starts: the result the idle flow run returned
    check = {"model": NIGHTLY_MODEL, "labels": None, "secret": _no_secret}
    idle = idle_result(out, str(archive), **check)
    assert idle is not None and idle.report is None
    assert (idle.ingest.scanned, idle.ingest.unchanged, idle.ingest.new) == (5, 5, 0)
    assert idle.preprocess == second.preprocess and idle.features == second.features
    assert idle.model == second.model
    (archive / "copy.nii").write_bytes((archive / "anatomical.nii").read_bytes())
    assert idle_result(out, str(archive), **check) is None  # a new file: the flow runs


def _no_secret() -> bytes:
    raise ConfigError("a run without labels needs no secret")


@pytest.mark.slow
def test_two_nightly_runs_never_write_at_once(tmp_path: Path) -> None:
    archive, out = _archive(tmp_path), str(tmp_path / "store.zarr")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [BIN / "medpipe", "nightly", str(archive), out, "--cluster", "local:1"],
        env=env,
        stdout=log,
        stderr=log,
    )
    lock = Path(out) / "locks" / "write.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the first run never took the store lock"
    with pytest.raises(StoreLockedError, match="locked by run"):
        nightly_flow(NightlyParams(archive=str(archive), store=out, cluster="local:1"))
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert not lock.exists()
    again = nightly_flow(NightlyParams(archive=str(archive), store=out, cluster="local:1"))
    assert again.ingest.series_ingested == 0  # the first run did all the work, once
    # with nothing to do and no Prefect server, the command starts no flow
    idle = subprocess.run(
        [BIN / "medpipe", "nightly", str(archive), out],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert idle.returncode == 0, idle.stdout + idle.stderr
    assert "no flow started" in idle.stdout and "Starting temporary server" not in idle.stderr
