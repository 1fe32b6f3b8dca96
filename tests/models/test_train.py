"""train → evaluate → score on an ingested archive (in process, no Prefect)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import xarray as xr

from medpipe.deid import pseudonym
from medpipe.errors import ModelError, ModelMismatchError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import (
    feature_table,
    features_group,
    open_features,
    write_features,
)
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.train import (
    evaluate_model,
    open_scores,
    score_model,
    train_model,
)

from ..store.test_tables import assert_spec_strings
from .conftest import SECRET


def test_patient_grouped_cv_on_archive(grouped_store: dict) -> None:
    """Acceptance 3: with 3 images per patient, no fold puts a patient on both sides."""
    store, archive = grouped_store["store"], grouped_store["archive"]
    table = lab.join_labels(
        open_features(store, grouped_store["features"]),
        lab.read_labels(archive / "labels.csv", secret=SECRET),
    )
    train = np.flatnonzero(table["split"].values == "train")
    patients = np.array([str(p) for p in table["patient"].values])[train]
    # the table's patient keys are the keyed hashes of the DICOM PatientIDs, 3 images each
    ids = {pydicom.dcmread(f, stop_before_pixels=True).PatientID
           for f in (archive / "dicom" / "train").glob("*.dcm")}
    assert set(patients) == {pseudonym(i, secret=SECRET, kind="patient") for i in ids}
    assert all(np.sum(patients == p) == 3 for p in set(patients))
    folds = est.grouped_folds(table["label"].values[train], patients, n_splits=4)
    for tr, te in folds:
        assert not set(patients[tr]) & set(patients[te])
    assert sorted(np.concatenate([te for _, te in folds])) == list(range(len(train)))


def test_train_evaluate_score(grouped_store: dict, tmp_path: Path) -> None:
    store, archive = grouped_store["store"], grouped_store["archive"]
    out = train_model(store, name="tiny", features=grouped_store["features"],
                      labels=archive / "labels.csv", secret=SECRET, estimator="all",
                      n_splits=3, n_boot=100)
    assert out["version"] == reg.list_versions(store, "tiny")[-1]
    assert set(out["search"]) == {"svm", "logreg", "rf", "ensemble"}
    assert out["estimator"] == max(out["search"], key=out["search"].get)
    meta = reg.read_model_json(store, "tiny", out["version"])
    assert meta["labels"]["split_used"] == "train"
    assert meta["labels"]["n_train"] == 48 and meta["labels"]["n_patients"] == 16
    assert meta["feature_config_hash"] == grouped_store["config"].hash()
    assert meta["catalog_hash"] and meta["libraries"]["scikit-learn"]
    for k in ("auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy"):
        m = meta["metrics"]["cv"][k]
        assert m["ci_low"] <= m["value"] <= m["ci_high"]

    # no identifier from the archive anywhere in the model folder or the label table
    phi = set()
    for f in (archive / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        phi |= {str(ds.PatientName), ds.PatientID, ds.SeriesInstanceUID, ds.StudyInstanceUID,
                ds.AccessionNumber}
    blobs = b"".join(p.read_bytes() for sub in ("models", "labels")
                     for p in (Path(store) / sub).rglob("*") if p.is_file())
    assert not [v for v in phi if v.encode() in blobs]

    # evaluate on val needs no labels (recorded at training time)
    ev = evaluate_model(store, model="tiny", split="val", n_boot=100)
    assert ev["n"] == 24
    assert ev["lines"][0].startswith("AUC ") and "(95% CI " in ev["lines"][0]
    assert (Path(store) / ev["report"]).is_file() and (Path(store) / ev["roc"]).is_file()
    with pytest.raises(ModelError, match="no labelled samples"):
        evaluate_model(store, model="tiny", split="test", n_boot=10)

    # scoring: every sample once; a rerun scores nothing; values equal the model's
    res = score_model(store, model="tiny")
    table = open_features(store, grouped_store["features"])
    assert res["scored"] == res["total"] == table.sizes["sample"]
    assert score_model(store, model="tiny")["scored"] == 0
    scores = open_scores(store, res["group"]).load()
    model, meta = reg.load_model(store, "tiny")
    x = table["features"].sel(sample=scores["sample"].values,
                              feature=meta["feature_names"]).values
    np.testing.assert_allclose(scores["probability"].values, est.positive_proba(model, x))
    np.testing.assert_array_equal(scores["predicted"].values,
                                  (scores["probability"].values >= meta["threshold"]).astype(int))
    # every table of the store stores its strings with a Zarr v3 spec'd data type
    for group in (grouped_store["features"], res["group"]):
        assert_spec_strings(Path(store) / group)
    assert {"sample", "series", "series_uid"} <= set(scores.coords)


def test_scores_are_appended_in_order_and_match_a_single_run(grouped_store: dict,
                                                              tmp_path: Path) -> None:
    """Scoring in two runs (--limit) appends; the table equals scoring all at once."""
    import shutil

    store, archive = grouped_store["store"], grouped_store["archive"]
    if not reg.list_versions(store, "tiny"):
        train_model(store, name="tiny", features=grouped_store["features"],
                    labels=archive / "labels.csv", secret=SECRET, estimator="svm",
                    n_splits=3, n_boot=10)
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("scores"))
    first = score_model(copy, model="tiny", limit=5)
    assert first["scored"] == first["total"] == 5
    rest = score_model(copy, model="tiny")
    assert rest["total"] == rest["scored"] + 5
    once = str(tmp_path / "once.zarr")
    shutil.copytree(store, once, ignore=shutil.ignore_patterns("scores"))
    score_model(once, model="tiny")
    a = open_scores(copy, rest["group"]).load()
    b = open_scores(once, rest["group"]).load()
    # probabilities of differently blocked batches agree to rounding; all else is identical
    xr.testing.assert_allclose(a, b, rtol=1e-12)
    xr.testing.assert_identical(a.drop_vars("probability"), b.drop_vars("probability"))
    assert_spec_strings(Path(copy) / rest["group"])


def test_feature_config_mismatch_is_refused(grouped_store: dict) -> None:
    store, archive = grouped_store["store"], grouped_store["archive"]
    if not reg.list_versions(store, "tiny"):
        train_model(store, name="tiny", features=grouped_store["features"],
                    labels=archive / "labels.csv", secret=SECRET, estimator="svm",
                    n_splits=3, n_boot=10)
    other = FeatureConfig(families=("pixels", "histogram", "firstorder"), pixels_size=12)
    group = features_group(other)
    write_features(feature_table(store, config=other), store=store, path=group)
    with pytest.raises(ModelMismatchError, match="config"):
        score_model(store, model="tiny", features=group)
    with pytest.raises(ModelMismatchError):
        evaluate_model(store, model="tiny", features=group)
