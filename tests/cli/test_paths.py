"""Local paths reach the flows absolute: a cluster's workers may run in another folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medpipe.cli import app
from medpipe.cli import stages as stages_cli
from medpipe.cli.common import absolute_local


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/prefix", "dicomweb+http://127.0.0.1:8042/dicom-web", "memory://x", "file:///a"],
)
def test_urls_are_kept(url: str) -> None:
    assert absolute_local(url) == url


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_local("S") == str(tmp_path / "S")
    assert absolute_local(str(tmp_path / "T")) == str(tmp_path / "T")


def test_preprocess_sends_the_flow_an_absolute_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    class Stop(Exception):
        pass

    def run_flow(flow: object, params: object) -> None:
        seen.append(params)
        raise Stop

    monkeypatch.setattr(stages_cli, "run_flow", run_flow)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["preprocess", "S", "--cluster", "tcp://127.0.0.1:1"])
    assert isinstance(result.exception, Stop), result.output
    (params,) = seen
    assert params.store == os.path.join(str(tmp_path), "S")  # type: ignore[attr-defined]


def test_an_error_naming_a_long_path_prints_it_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """Past the console's width (80 columns here) the message stays on one line, and a
    ``[`` in a path is printed, not read as markup: the path can be copied as printed."""
    from medpipe.cli.common import fail

    path = "/data/" + "x" * 120 + "/[scan 2]/store.zarr"
    exit_ = fail(ValueError(f"store {path!r} has no run 'nope'"))
    assert exit_.exit_code == 2
    assert f"error: store {path!r} has no run 'nope'\n" in capsys.readouterr().out
