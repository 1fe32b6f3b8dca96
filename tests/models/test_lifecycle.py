"""The model lifecycle: labels recorded once, when to retrain, the promotion rule, what to
score — on real stores and label files, without Prefect."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medpipe.models import labels as lab
from medpipe.models import lifecycle
from medpipe.models import registry as reg
from medpipe.sample import build_medmnist_archive

from .conftest import SECRET


@pytest.fixture
def label_file(tiny_npz: Path, tmp_path: Path) -> Path:
    archive = build_medmnist_archive(tiny_npz, tmp_path / "a", name="breastmnist", limit=4)
    return archive / "labels.csv"


def test_prepare_labels_records_the_pseudonymised_table_once(
    label_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "s.zarr")
    calls: list[str] = []
    real = lab.read_labels
    monkeypatch.setattr(lab, "read_labels", lambda p, **kw: calls.append(str(p)) or real(p, **kw))
    path = lifecycle.prepare_labels(store, label_file, secret=lambda: SECRET)
    expected = real(label_file, secret=SECRET)
    assert path == lab.write_labels(store, expected)  # the same content-addressed table
    pd.testing.assert_frame_equal(lab.read_stored_labels(store, path), expected)
    # a table recorded earlier in the run is used as it is: the file is not read again
    again = lifecycle.prepare_labels(store, label_file, secret=SECRET, stored=path)
    assert again == path and calls == [str(label_file)]
    # no labels: no secret needed
    assert lifecycle.prepare_labels(store, None, secret=lambda: pytest.fail("asked")) is None


def test_labels_path_is_the_recorded_path_and_writes_nothing(
    label_file: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.zarr"
    path = lifecycle.labels_path(label_file, secret=lambda: SECRET)
    assert path is not None and not store.exists()
    assert path == lifecycle.prepare_labels(str(store), label_file, secret=SECRET)
    other = lifecycle.labels_path(label_file, secret=b"another secret")
    assert other != path  # the pseudonymised keys take part in the table's hash
    assert lifecycle.labels_path(None, secret=lambda: pytest.fail("asked")) is None


def _auc(value: float, low: float) -> dict:
    return {"value": value, "ci_low": low, "ci_high": min(1.0, 2 * value - low)}


@pytest.mark.parametrize(
    ("candidate", "current", "promoted"),
    [(0.70, None, True), (0.74, _auc(0.80, 0.75), False), (0.75, _auc(0.80, 0.75), True),
     (0.90, _auc(0.80, 0.75), True)],
)
def test_promotion_decision(candidate: float, current: dict | None, promoted: bool) -> None:
    ok, reason = lifecycle.promotion_decision(candidate, current)
    assert ok is promoted
    if current is None:
        assert reason == "no current model"
    else:
        sign = ">=" if promoted else "<"
        assert reason == f"CV AUC {candidate:.3f} {sign} current CI lower bound 0.750"


def test_needs_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "s.zarr")
    known = {"v1": {"labels": {"path": "labels/abc.parquet"},
                    "metrics": {"cv": {"auc": _auc(0.8, 0.75)}}}}
    monkeypatch.setattr(reg, "read_model_json", lambda s, n, v=None: known[v])
    assert not lifecycle.needs_training(store, "m", None, retrain=True)  # no labels
    assert lifecycle.needs_training(store, "m", "labels/abc.parquet")  # no model yet
    lifecycle.promote(store, "m", {"version": "v1", "metrics": {"auc": _auc(0.8, 0.75)}})
    assert not lifecycle.needs_training(store, "m", "labels/abc.parquet")
    assert lifecycle.needs_training(store, "m", "labels/abc.parquet", retrain=True)
    assert lifecycle.needs_training(store, "m", "labels/new.parquet")


def test_plan_scoring_without_a_model(tmp_path: Path) -> None:
    plan = lifecycle.plan_scoring(str(tmp_path / "s.zarr"), "m", "features/x")
    assert (plan.version, plan.run, plan.note) == (None, False, lifecycle.NO_MODEL_NOTE)
    res = lifecycle.model_stage_result(str(tmp_path / "s.zarr"), plan)
    assert (res.name, res.version, res.metrics, res.note) == ("m", None, None, plan.note)


def test_label_source_name() -> None:
    assert lifecycle.label_source_name("/data/a/labels.csv") == "labels.csv"
    assert lifecycle.label_source_name("C:\\exports\\lab.parquet") == "lab.parquet"
