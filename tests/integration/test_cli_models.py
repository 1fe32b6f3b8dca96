"""The model commands as a user runs them: sample → ingest → features → train → evaluate,
then a second archive holding a test split ingested into the same store and evaluated,
then scoring.  Each command is a separate ``medpipe`` process reporting to a real Prefect
server, where the train run's metrics table and ROC plot land as artifacts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


def test_sample_train_evaluate_val_then_a_test_archive(
    tmp_path: Path, prefect_server: PrefectServer
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
    medpipe("ingest", "A", "S", "--cluster", "local:2")
    medpipe("features", "S", "--config", "A/features.yaml", "--cluster", "local:2")
    out = medpipe("train", "S", "--labels", "A/labels.csv", "--model", "m",
                  "--estimator", "logreg", "--folds", "3", "--evaluate", "",
                  "--cluster", "local:2")
    assert "model m:v1 (logreg, 48 training samples)" in out
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
    medpipe("ingest", "B", "S", "--cluster", "local:2")
    medpipe("features", "S", "--config", "B/features.yaml", "--cluster", "local:2")
    test = medpipe("evaluate", "S", "--model", "m:v1", "--split", "test",
                   "--labels", "B/labels.csv", "--n-boot", "200")
    assert "m:v1 on test (n=20," in test
    assert _auc(test) > 0.8

    scored = medpipe("score", "S", "--model", "m", "--cluster", "local:2")
    assert "scored 92 new samples; 92 in S/scores/m/v1" in scored
    listing = medpipe("models", "list", "S")
    assert "m:v1" in listing and "logreg" in listing
