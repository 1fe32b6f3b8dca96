"""Real MedMNIST (shared data): sample → ingest → features → train → evaluate on val."""

from __future__ import annotations

from pathlib import Path

import pytest

from medpipe import ingest
from medpipe.config import load_config
from medpipe.features import FeatureConfig
from medpipe.features.dataset import feature_table, features_group, write_features
from medpipe.models.train import evaluate_model, train_model
from medpipe.sample import build_medmnist_archive

from .conftest import SECRET


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_breastmnist_beats_raw_pixel_logistic_regression(shared_data: Path,
                                                         tmp_path: Path) -> None:
    npz = shared_data / "labeled" / "breastmnist_trainval.npz"
    archive = build_medmnist_archive(npz, tmp_path / "archive", name="breastmnist")
    store = str(tmp_path / "store.zarr")
    summary = ingest.ingest_archive(str(archive), store, secret=SECRET)
    assert summary.series_ingested == 546 + 78
    cfg = load_config(FeatureConfig, archive / "features.yaml")  # as the CLI reads it
    group = features_group(cfg)
    write_features(feature_table(store, config=cfg), store=store, path=group)
    out = train_model(store, name="breast", features=group, labels=archive / "labels.csv",
                      secret=SECRET, estimator="logreg", n_boot=200)
    assert out["n_train"] == 546
    ev = evaluate_model(store, model="breast", split="val", n_boot=500)
    assert ev["n"] == 78
    # published: logistic regression on raw pixels ~0.79 test AUC, ResNet-18 0.901;
    # these features and classifier reached 0.882 on val here.  cv_auc is the nested
    # (outer-fold) estimate that selection never saw: 0.816 here, where the selection score
    # on the same folds it chose by was 0.847; it must still beat raw-pixel regression
    assert out["cv_auc"] > 0.79
    assert ev["metrics"]["auc"]["value"] > 0.85, ev["lines"]
