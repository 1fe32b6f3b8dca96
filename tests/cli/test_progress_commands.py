"""Long stages through the real CLI: a Rich bar under a pseudo-terminal, plain lines piped.

One small labelled store (real MR/CT patches, ingested once) serves every command; each
command computes a feature table of its own config, so each really has work to do.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medpipe import ingest
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group, open_features
from medpipe.sample import build_medmnist_archive
from tests.models.conftest import SECRET, write_npz

N_TRAIN, N_VAL = 16, 8
#: Samples: one per image (the archive has no ROI masks).
N = N_TRAIN + N_VAL
CLI = "from medpipe.cli import app; app()"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMEOUT_S = 300


@pytest.fixture(scope="module", autouse=True)
def api_url(prefect_test_api: str) -> Iterator[str]:
    """The session's temporary Prefect API for the module's commands (each would start its
    own)."""
    os.environ["PREFECT_API_URL"] = prefect_test_api
    try:
        yield prefect_test_api
    finally:
        del os.environ["PREFECT_API_URL"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("progress")
    npz = write_npz(root / "tiny.npz", n_train=N_TRAIN, n_val=N_VAL)
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist")
    out = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), out, secret=SECRET)
    configs = {}
    for name, text in (("tty", "families: [firstorder]\n"),
                       ("piped", "families: [histogram, pixels]\npixels_size: 8\n")):
        path = root / f"{name}.yaml"
        path.write_text(text)
        configs[name] = path
    return {"store": out, "archive": archive, "configs": configs}


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "MEDPIPE_SECRET": SECRET.decode(), "COLUMNS": "120", **extra}
    for key in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(key, None)
    return env


def _piped(*args: str) -> subprocess.CompletedProcess:
    env = _env()
    env.pop("TERM", None)
    proc = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    return proc


def _under_pty(*args: str) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return what it drew."""
    main, sub = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdin=subprocess.DEVNULL,
                            stdout=sub, stderr=sub, env=_env(TERM="xterm-256color"))
    os.close(sub)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    out = b"".join(chunks).decode(errors="replace")
    assert code == 0, out[-4000:]
    return out


def _samples(store: str, config: Path) -> int:
    cfg = FeatureConfig.from_yaml(config)
    return open_features(store, features_group(cfg)).sizes["sample"]


def test_features_under_a_pty_draw_a_rich_bar(store: dict) -> None:
    out = _under_pty("features", store["store"], "--config", str(store["configs"]["tty"]),
                     "--cluster", "local:1")
    assert _samples(store["store"], store["configs"]["tty"]) == N
    assert "\x1b[?25l" in out  # a live display hid the cursor: a drawn bar, not lines
    assert "━" in out  # the bar itself
    plain = ANSI.sub("", out)
    assert re.search(rf"features\s.*\b{N}/{N}\b", plain), plain[-3000:]
    assert f"features: {N}/{N} (100%)" not in plain  # not the plain fallback
    # what reached Prefect's API (the UI's logs) has no terminal control characters
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        messages = [log.message for log in client.read_logs()]
    assert any("feature table" in m for m in messages), messages
    assert not any("\x1b" in m or "\r" in m or "━" in m for m in messages)


def test_features_piped_print_plain_lines(store: dict) -> None:
    proc = _piped("features", store["store"], "--config", str(store["configs"]["piped"]),
                  "--cluster", "local:1")
    assert _samples(store["store"], store["configs"]["piped"]) == N
    lines = proc.stderr.splitlines()
    assert f"features: {N}/{N} (100%)" in lines, proc.stderr[-3000:]
    for text in (proc.stderr, proc.stdout):
        assert "\x1b" not in text and "\r" not in text


def test_train_reports_its_steps_and_score_pipes_plain_lines(store: dict) -> None:
    """In-process features and train report real work; ``medpipe score`` piped counts it."""
    import numpy as np
    import pandas as pd

    from medpipe.features.dataset import update_features
    from medpipe.models.train import train_model, train_steps

    cfg = FeatureConfig(families=("firstorder", "histogram"))
    seen: list[tuple[str, int, int]] = []
    out = update_features(store["store"], config=cfg, progress=lambda *a: seen.append(a))
    assert out["computed"] == N
    assert seen[0] == ("features", 0, N) and seen[-1] == ("features", N, N)
    assert [s[1] for s in seen] == list(range(N + 1))  # one report per sample, as it finished

    seen.clear()
    res = train_model(store["store"], name="prog", features=out["group"],
                      labels=store["archive"] / "labels.csv", secret=SECRET,
                      estimator="logreg", n_splits=2, outer_folds=2, n_boot=20,
                      progress=lambda *a: seen.append(a))
    labels = pd.read_csv(store["archive"] / "labels.csv")
    y = labels.loc[labels["split"] == "train", "label"].to_numpy()
    groups = np.arange(len(y))  # one patient per image in this archive
    total = train_steps(["logreg"], y, groups, vote=False, large=None, outer_folds=2)
    # the selection search, its refit; per outer fold a search and a refit; registration
    assert total == 1 + 1 + 2 * 2 + 1
    assert [s[1] for s in seen] == list(range(total + 1))
    assert {s[2] for s in seen} == {total} and {s[0] for s in seen} == {"train"}

    proc = _piped("score", store["store"], "--model", f"prog:{res['version']}",
                  "--cluster", "local:1")
    assert f"score: {N}/{N} (100%)" in proc.stderr.splitlines(), proc.stderr[-3000:]
    for text in (proc.stderr, proc.stdout):
        assert "\x1b" not in text and "\r" not in text
