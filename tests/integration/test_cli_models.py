"""The model commands as a user runs them: sample → ingest → features → train → evaluate,
then a second archive holding a test split ingested into the same store and evaluated,
then scoring.  Each command is a separate ``medpipe`` process reporting to a real Prefect
server, where the train run's metrics table and ROC plot land as artifacts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import PrefectServer, base_env
from tests.models.conftest import real_patches, write_npz

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _auc(out: str) -> float:
    m = re.search(r"^AUC (\S+) \(95% CI (\S+)-(\S+)\)$", out, re.M)
    assert m, out
    value, low, high = map(float, m.groups())
    assert low <= value <= high
    return value


@pytest.fixture
def scheduler(
    prefect_server: PrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """One real 2-worker LocalCluster that every command of the test runs on, as a user
    passes ``--cluster tcp://host:port``: each command would otherwise start (and pay the
    start-up of) its own two worker processes.  The workers report to the same server and
    work in the commands' directory (the store path ``S`` is relative), as the workers of
    a ``local`` cluster a command starts do."""
    from distributed import LocalCluster

    env = {"PREFECT_API_URL": prefect_server.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "MEDPIPE_SECRET": os.environ["MEDPIPE_SECRET"]}
    with monkeypatch.context() as m:
        m.chdir(tmp_path)  # the worker processes inherit it
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, env=env)
    with cluster:
        yield cluster.scheduler_address


def test_sample_train_evaluate_val_then_a_test_archive(
    tmp_path: Path, prefect_server: PrefectServer, scheduler: str
) -> None:
    env = base_env(tmp_path / "prefect-home", PREFECT_API_URL=prefect_server.api,
                   COLUMNS="200")

    def medpipe(*args: str) -> str:
        proc = subprocess.run([str(BIN / "medpipe"), *args], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=600)
        assert proc.returncode == 0, (
            f"medpipe {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        return proc.stdout

    write_npz(tmp_path / "trainval.npz", n_train=48, n_val=24)
    xt, yt = real_patches(20, seed=7)
    np.savez(tmp_path / "test.npz", test_images=xt, test_labels=yt[:, None])

    medpipe("sample", "medmnist", "--name", "breastmnist", "--npz", "trainval.npz",
            "--out", "A")
    medpipe("ingest", "A", "S", "--cluster", scheduler)
    medpipe("features", "S", "--config", "A/features.yaml", "--cluster", scheduler)
    out = medpipe("train", "S", "--labels", "A/labels.csv", "--model", "m",
                  "--estimator", "logreg", "--folds", "2", "--outer-folds", "0", "--evaluate", "",
                  "--cluster", scheduler)
    assert "model m:v1 (logreg, 48 training samples)" in out
    # the smallest selection (2 folds, no nested CV: a third of the fits of 3 outer folds);
    # the nested CV is the train tests' subject, this test is the commands' plumbing
    assert "cross-validation on the selection folds (patient-grouped; optimistic):" in out
    artifacts = {a["key"]: a for a in prefect_server.post("/artifacts/filter")}
    assert artifacts["m-cv-metrics"]["type"] == "table"
    assert "data:image/png;base64," in artifacts["m-cv-roc"]["data"]

    # the labels were recorded at training time: evaluate needs no --labels
    val = medpipe("evaluate", "S", "--model", "m", "--split", "val", "--n-boot", "200")
    assert "m:v1 on val (n=24," in val
    assert _auc(val) > 0.8  # bright vs dark patches: an easy problem
    report = json.loads((tmp_path / "S/models/m/v1/reports/val.json").read_text())
    assert report["n"] == 24 and report["split"] == "val"
    assert (tmp_path / "S/models/m/v1/reports/roc_val.png").read_bytes()[:4] == b"\x89PNG"

    # a second export holding only a test split joins the same store
    medpipe("sample", "medmnist", "--name", "breastmnist", "--npz", "test.npz", "--out", "B")
    medpipe("ingest", "B", "S", "--cluster", scheduler)
    medpipe("features", "S", "--config", "B/features.yaml", "--cluster", scheduler)
    test = medpipe("evaluate", "S", "--model", "m:v1", "--split", "test",
                   "--labels", "B/labels.csv", "--n-boot", "200")
    assert "m:v1 on test (n=20," in test
    assert _auc(test) > 0.8

    scored = medpipe("score", "S", "--model", "m", "--cluster", scheduler)
    assert f"scored 92 new samples; 92 in {tmp_path / 'S'}/scores/m/v1" in scored  # absolute
    listing = medpipe("models", "list", "S")
    assert "m:v1" in listing and "logreg" in listing
