"""Result dataclasses: frozen, and built from the stage functions' own outputs."""

from __future__ import annotations

import dataclasses

import pytest

from medpipe.results import (
    EvaluationResult,
    FeatureResult,
    PreprocessBatch,
    PreprocessResult,
    ScoreResult,
    TrainResult,
)


def test_preprocess_batches_merge_into_sorted_keys_and_reasons() -> None:
    batches = [
        PreprocessBatch(written={"k3": "preprocessed/p/k3"}, unsupported={"k9": "RGB image"}),
        PreprocessBatch(written={"k1": "preprocessed/p/k1", "k2": "preprocessed/p/k2"}),
    ]
    res = PreprocessResult.from_batches("preprocessed/p", batches)
    assert res.keys == ("k1", "k2", "k3") and res.done == 3
    assert dict(res.unsupported) == {"k9": "RGB image"}
    assert res.skipped is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.group = "x"  # type: ignore[misc]


def test_from_stage_dicts() -> None:
    feat = FeatureResult.from_update({"group": "features/a", "computed": 2, "kept": 5,
                                      "keys": ["k1", "k2"]})
    assert (feat.group, feat.computed, feat.kept, feat.keys) == ("features/a", 2, 5, ("k1", "k2"))
    score = ScoreResult.from_dict({"group": "scores/m/v1", "scored": 3, "total": 7})
    assert (score.scored, score.total, score.skipped) == (3, 7, None)
    auc = {"auc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}}
    train = TrainResult.from_dict({"name": "m", "version": "v2", "estimator": "rf",
                                   "cv_auc": 0.8, "metrics": auc, "n_train": 10,
                                   "search": {"rf": 0.8}})
    assert train.ref == "m:v2" and train.evaluation is None
    assert train.as_candidate() == {"version": "v2", "metrics": auc}
    ev = EvaluationResult.from_dict({"model": "m:v2", "split": "val", "n": 4, "n_positive": 2,
                                     "metrics": auc, "lines": ["AUC 0.800"], "roc": None,
                                     "report": "models/m/v2/reports/val.json",
                                     "roc_png": b""})
    assert ev.lines == ("AUC 0.800",) and ev.roc is None
