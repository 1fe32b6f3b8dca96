"""``info``, ``quarantine`` and ``models list`` piped: nothing is cut short, in any format."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from medpipe import catalog, ingest
from medpipe.models import registry
from medpipe.sample import build_bundled_archive

ANSI = "\x1b["
#: A features group name longer than any 80-column table cell.
LONG_GROUP = "features/" + "radiomics-firstorder-glcm-glrlm-glszm-ngtdm-gldm-shape" * 2
FORMATS = ([], ["--json"], ["--tsv"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("listings")
    archive = build_bundled_archive(root / "archive")
    out = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), out, secret=b"test-secret")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2)), np.arange(20) % 2
    registry.save_model(
        out,
        "m",
        LogisticRegression().fit(x, y),
        {"estimator": "logreg", "features_group": LONG_GROUP},
    )
    return out


def _run(*args: str) -> str:
    """Run the real CLI with stdout a pipe (no TTY) and an 80-column default width."""
    env = {**os.environ, "COLUMNS": "80", "MEDPIPE_SECRET": "test-secret"}
    env.pop("FORCE_COLOR", None)
    code = "from medpipe.cli import app; app()"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert ANSI not in proc.stdout
    return proc.stdout


def _check(fmt: list[str], out: str, column: str, longest: str) -> None:
    if fmt == ["--json"]:
        values = [rec[column] for rec in json.loads(out)]
        assert longest in values
    elif fmt == ["--tsv"]:
        rows = list(csv.DictReader(io.StringIO(out), delimiter="\t"))
        assert longest in [r[column] for r in rows]
    else:
        # The table folds long cells over lines; joined back, the whole value is there
        # (no ellipsis), and no line is wider than the terminal.
        assert "…" not in out
        assert all(len(line) <= 80 for line in out.splitlines())
        lines = out.splitlines()
        header = next(line for line in lines if "┃" in line and column in line)
        idx = [c.strip() for c in header.split("┃")].index(column)
        cells = "".join(line.split("│")[idx].strip() for line in lines if "│" in line)
        assert longest in cells


@pytest.mark.parametrize("fmt", FORMATS, ids=["table", "json", "tsv"])
def test_quarantine_lists_the_longest_path_whole(store: str, fmt: list[str]) -> None:
    cat = catalog.current(store)
    bad = cat[cat["status"] == "quarantined"]
    longest = max(bad["path"], key=len)
    assert "JPEG2000-embedded-sequence-delimiter.dcm" in " ".join(bad["path"])
    _check(fmt, _run("quarantine", store, *fmt), "path", longest)


@pytest.mark.parametrize("fmt", FORMATS, ids=["table", "json", "tsv"])
def test_info_lists_every_series_whole(store: str, fmt: list[str]) -> None:
    series = [
        g.rsplit("/", 1)[-1]
        for g in __import__("medpipe.store", fromlist=["x"]).list_groups(store, ingest.IMAGES)
    ]
    longest = max(series, key=len)
    _check(fmt, _run("info", store, *fmt), "series", longest)


@pytest.mark.parametrize("fmt", FORMATS, ids=["table", "json", "tsv"])
def test_models_list_shows_the_whole_features_group(store: str, fmt: list[str]) -> None:
    _check(fmt, _run("models", "list", store, *fmt), "features", LONG_GROUP)


def test_json_and_tsv_are_exclusive(store: str) -> None:
    env = {**os.environ, "MEDPIPE_SECRET": "test-secret"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from medpipe.cli import app; app()",
            "info",
            store,
            "--json",
            "--tsv",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
