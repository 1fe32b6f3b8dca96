"""The promotion rule: a new model replaces the current one only if its CV AUC is not
below the lower bound of the current model's CV AUC confidence interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medpipe.models import promotion
from medpipe.models import registry as reg


def _auc(value: float, low: float, high: float) -> dict:
    return {"auc": {"value": value, "ci_low": low, "ci_high": high}}


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    known: dict[str, dict] = {}
    monkeypatch.setattr(reg, "read_model_json", lambda store, name, version=None: known[version])
    return known


def test_first_model_is_promoted_and_recorded(tmp_path: Path, models) -> None:
    store = str(tmp_path / "s.zarr")
    assert promotion.current_version(store, "m") is None
    models["v1"] = {"metrics": {"cv": _auc(0.80, 0.75, 0.85)}}
    decision = promotion.promote(store, "m", {"version": "v1", "metrics": _auc(0.80, 0.75, 0.85)})
    assert decision["promoted"] and decision["reason"] == "no current model"
    assert promotion.current_version(store, "m") == "v1"


def test_worse_than_ci_lower_bound_is_not_promoted(tmp_path: Path, models) -> None:
    store = str(tmp_path / "s.zarr")
    models["v1"] = {"metrics": {"cv": _auc(0.80, 0.75, 0.85)}}
    promotion.promote(store, "m", {"version": "v1", "metrics": _auc(0.80, 0.75, 0.85)})
    worse = promotion.promote(store, "m", {"version": "v2", "metrics": _auc(0.74, 0.7, 0.8)})
    assert not worse["promoted"] and "0.740 < current CI lower bound 0.750" in worse["reason"]
    assert promotion.current_version(store, "m") == "v1"
    close = promotion.promote(store, "m", {"version": "v3", "metrics": _auc(0.76, 0.7, 0.8)})
    assert close["promoted"] and promotion.current_version(store, "m") == "v3"
    state = json.loads((tmp_path / "s.zarr" / "models" / "m" / "current.json").read_text())
    assert [d["candidate"] for d in state["decisions"]] == ["v1", "v2", "v3"]


def test_labels_changed(tmp_path: Path, models) -> None:
    models["v1"] = {"labels": {"path": "labels/abc.parquet"}}
    store = str(tmp_path / "s.zarr")
    assert promotion.labels_changed(store, "m", None, "labels/abc.parquet")
    assert not promotion.labels_changed(store, "m", "v1", "labels/abc.parquet")
    assert promotion.labels_changed(store, "m", "v1", "labels/def.parquet")
