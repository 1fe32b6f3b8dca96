"""``medpipe predict`` on real files: the probability is the one ``score`` writes.

A small real model is trained on 40 BreastMNIST ultrasound images (the file packaged in
``medpipe/data``) turned into a DICOM export; its source files are then predicted one
by one (and as a folder, through the CLI) and compared with the score table of the same
series.  Refusals use real files too: pydicom's MR slice, BreastMNIST images of another
size.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from medpipe import ingest
from medpipe.deid import pseudonym
from medpipe.errors import ConfigError, ModelError, ModelMismatchError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group, update_features
from medpipe.models import registry as reg
from medpipe.models.domain import domain_problems
from medpipe.models.estimators import (
    Estimator,
    positive_proba,
    register_estimator,
    unregister_estimator,
)
from medpipe.models.train import open_scores, score_model, scores_group, train_model
from medpipe.predict import FOREST, LINEAR, explain, predict
from medpipe.preprocess import GaussianStep, PreprocessConfig
from medpipe.preprocess.apply import preprocess_batch, preprocessed_group
from medpipe.sample import build_medmnist_archive, packaged_medmnist
from medpipe.store import layout, list_groups, read_attrs, tables

SECRET = b"test-secret"
N_TRAIN = 30
#: A 25-tree forest (the built-in ``rf`` has 300): the attribution is the same code.
SMALL_RF = Estimator(
    "rf-small",
    classifier=lambda *, large, random_state: RandomForestClassifier(
        n_estimators=25, n_jobs=1, random_state=random_state),
    grid=lambda *, large: {"clf__min_samples_leaf": [1, 3]},
)
CONFIG = FeatureConfig(families=("firstorder", "histogram", "pixels"), pixels_size=14)


def _train(store: str, labels: Path, name: str, group: str, estimator: str) -> str:
    train_model(store, name=name, features=group, labels=labels, secret=SECRET,
                estimator=estimator, n_splits=3, n_boot=20, outer_folds=0)
    score_model(store, model=name)
    return name


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store with three scored models: logreg and rf on raw images, logreg on
    Gaussian-smoothed images."""
    npz = packaged_medmnist("breastmnist")
    if npz is None:
        pytest.skip("the packaged BreastMNIST file is missing from medpipe/data")
    root = tmp_path_factory.mktemp("predict")
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist",
                                     splits=["train"], limit=N_TRAIN)
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    labels = archive / "labels.csv"
    raw = update_features(store, config=CONFIG)["group"]
    pre = PreprocessConfig(steps=(GaussianStep(sigma_mm=0.7),))
    keys = [layout.key_of(p) for p in list_groups(store, layout.IMAGES)]
    written, unsupported = preprocess_batch(store, keys, config=pre)
    assert not unsupported and len(written) == N_TRAIN
    smooth = update_features(store, config=CONFIG, source=preprocessed_group(pre))["group"]
    out = {
        "root": root, "archive": archive, "store": store, "pre": pre, "smooth": smooth,
        "files": sorted((archive / "dicom" / "train").glob("*.dcm")),
        "logreg": _train(store, labels, "breast", raw, "logreg"),
        "smoothed": _train(store, labels, "breast-pre", smooth, "logreg"),
    }
    register_estimator(SMALL_RF)
    try:
        out["rf"] = _train(store, labels, "breast-rf", raw, SMALL_RF.name)
    finally:
        unregister_estimator(SMALL_RF.name)
    return out


def _score_of(store: str, model: str, series: str) -> tuple[float, int]:
    meta = reg.read_model_json(store, model)
    table = open_scores(store, scores_group(meta["name"], meta["version"]))
    samples = [str(s) for s in table["sample"].values]
    i = samples.index(series)
    return float(table["probability"].values[i]), int(table["predicted"].values[i])


def _series_key(store: str, path: Path) -> str:
    """The store key of the series ingested from ``path`` (its series-UID key matches)."""
    uid = pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
    want = pseudonym(uid, secret=SECRET, kind="series")
    (key,) = [layout.key_of(g) for g in list_groups(store, layout.IMAGES)
              if read_attrs(store, g)["medpipe"]["series_uid_key"] == want]
    return key


@pytest.fixture
def no_tmp_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary stores go under ``tmp_path/tmp``; the test checks nothing is left."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def test_probability_equals_score_logreg(trained: dict, no_tmp_left: Path) -> None:
    store = trained["store"]
    for f in trained["files"][:3]:
        res = predict(f, model="breast", model_store=store, secret=SECRET)
        (p,) = res.predictions
        assert p.series == _series_key(store, f) and p.modality == "US" and p.roi == ""
        prob, label = _score_of(store, "breast", p.series)
        assert p.probability == pytest.approx(prob, rel=1e-9)
        assert p.predicted == label == int(prob >= res.threshold)
        # coefficient x standardised value: intercept + contributions = log-odds
        e = p.explanation
        assert e.method == LINEAR and e.units == "log-odds"
        logit = math.log(p.probability / (1 - p.probability))
        assert e.bias + sum(c.contribution for c in e.contributions) == pytest.approx(
            logit, rel=1e-9, abs=1e-9)
        mags = [abs(c.contribution) for c in e.contributions]
        assert mags == sorted(mags, reverse=True)
        assert res.store is None and not res.refused and not res.unread
    assert list(no_tmp_left.iterdir()) == []  # the temporary store was deleted


def test_forest_probability_and_tree_path_attribution(trained: dict) -> None:
    store, f = trained["store"], trained["files"][5]
    (p,) = predict(f, model="breast-rf", model_store=store, secret=SECRET).predictions
    prob, _ = _score_of(store, "breast-rf", p.series)
    assert p.probability == pytest.approx(prob, rel=1e-9)
    e = p.explanation
    assert e.method == FOREST and e.units == "probability"
    # the root fraction plus every split's credit is the forest's probability
    assert e.bias + sum(c.contribution for c in e.contributions) == pytest.approx(
        prob, rel=1e-9)
    # reproducible: the same model and sample give the same attribution
    again = predict(f, model="breast-rf", model_store=store, secret=SECRET).predictions[0]
    assert again.explanation == e


def test_preprocessed_model_gets_its_preprocessing(trained: dict) -> None:
    store = trained["store"]
    meta = reg.read_model_json(store, "breast-pre")
    assert meta["preprocess_config"] == trained["pre"].model_dump(mode="json")
    assert meta["source"] == preprocessed_group(trained["pre"])
    for f in trained["files"][6:8]:
        (p,) = predict(f, model="breast-pre", model_store=store, secret=SECRET).predictions
        prob, _ = _score_of(store, "breast-pre", p.series)
        assert p.probability == pytest.approx(prob, rel=1e-9)
    # the same model on the raw (unsmoothed) features of that series answers otherwise:
    # without the recorded preprocessing, predict could not have matched the score
    fitted, meta = reg.load_model(store, "breast-pre")
    raw = tables.open_table(store, features_group(CONFIG))
    i = [str(s) for s in raw["sample"].values].index(p.series)
    row = raw["features"].isel(sample=[i]).sel(feature=meta["feature_names"]).values
    assert float(positive_proba(fitted, row)[0]) != pytest.approx(prob, rel=1e-6)


def test_domain_recorded_from_the_training_series(trained: dict) -> None:
    meta = reg.read_model_json(trained["store"], "breast")
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in trained["files"]]
    rows, cols = {int(h.Rows) for h in heads}, {int(h.Columns) for h in heads}
    assert meta["domain"] == {
        "modalities": sorted({str(h.Modality) for h in heads}),
        "dims": [2], "channels": [1],
        "size": {"z": [1, 1], "y": [min(rows), max(rows)], "x": [min(cols), max(cols)]},
        "samples": "whole image", "n_series": N_TRAIN,
    }
    assert meta["preprocess_config"] is None


def test_refuses_another_modality(trained: dict) -> None:
    mr = get_testdata_file("MR_small.dcm")
    with pytest.raises(ModelMismatchError) as err:
        predict(mr, model="breast", model_store=trained["store"], secret=SECRET)
    msg = str(err.value)
    assert "modality MR" in msg and "trained on US" in msg
    assert "y size 64 voxels is outside the training range 28" in msg


def test_mixed_folder_predicts_the_known_series_and_refuses_the_other(
        trained: dict, tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    shutil.copy2(trained["files"][2], study / "us.dcm")
    shutil.copy2(get_testdata_file("MR_small.dcm"), study / "mr.dcm")
    res = predict(study, model="breast", model_store=trained["store"], secret=SECRET)
    (p,) = res.predictions
    assert p.probability == pytest.approx(
        _score_of(trained["store"], "breast", p.series)[0], rel=1e-9)
    (r,) = res.refused
    assert r.reason.startswith("modality MR: the model was trained on US images only")
    assert r.what != p.series


def test_refuses_a_nifti_volume(trained: dict) -> None:
    """A NIfTI file goes through the NIfTI reader; a 3D MRI is not what the model saw."""
    import nibabel as nib
    from nibabel.testing import data_path

    f = Path(data_path) / "anatomical.nii"
    nx, ny, nz = nib.load(f).shape  # NIfTI i, j, k -> store x, y, z
    with pytest.raises(ModelMismatchError) as err:
        predict(f, model="breast", model_store=trained["store"], secret=SECRET)
    msg = str(err.value)
    assert f"a 3D image ({nz} slices): the model was trained on 2D images" in msg
    assert f"y size {ny} voxels" in msg and f"x size {nx} voxels" in msg


def test_refuses_another_geometry(trained: dict, tmp_path: Path) -> None:
    """Real ultrasound images, but 56x56: the model saw 28x28 only."""
    from skimage.transform import resize

    with np.load(packaged_medmnist("breastmnist")) as data:
        images = data["val_images"][:2]
        labels = data["val_labels"][:2]
    big = np.stack([resize(im, (56, 56), preserve_range=True).astype(np.uint8) for im in images])
    npz = tmp_path / "big.npz"
    np.savez(npz, val_images=big, val_labels=labels)
    archive = build_medmnist_archive(npz, tmp_path / "big", name="breastmnist")
    with pytest.raises(ModelMismatchError) as err:
        predict(archive / "dicom", model="breast", model_store=trained["store"],
                secret=SECRET)
    msg = str(err.value)
    assert msg.count("y size 56 voxels is outside the training range 28") == 2
    assert "modality" not in msg


def test_domain_problems_colour_volume_time() -> None:
    domain = {"modalities": ["US"], "dims": [2], "channels": [1],
              "size": {"z": [1, 1], "y": [28, 28], "x": [28, 28]}, "samples": "whole image"}
    ok = {"modality": "US", "axes": ["z", "y", "x"], "shape": [1, 28, 28], "labels": []}
    assert domain_problems(domain, ok) == []
    colour = {**ok, "axes": ["c", "y", "x"], "shape": [3, 28, 28]}
    assert domain_problems(domain, colour) == [
        "3 channel(s): the model was trained on images with 1 channel(s)"]
    volume = {**ok, "shape": [20, 28, 28]}
    assert domain_problems(domain, volume) == [
        "a 3D image (20 slices): the model was trained on 2D images"]
    series = {**ok, "axes": ["t", "z", "y", "x"], "shape": [4, 1, 28, 28]}
    assert domain_problems(domain, series)[0].startswith("a time series")
    roi = {**ok, "labels": ["GTV"]}
    assert domain_problems(domain, roi) == [
        "ROI masks (GTV): the model was trained on whole images"]


def test_old_model_without_recorded_configs(trained: dict, tmp_path: Path) -> None:
    old = tmp_path / "old.zarr"
    src = Path(trained["store"]) / layout.model("breast")
    shutil.copytree(src, old / layout.model("breast"))
    meta_file = next((old / layout.model("breast")).glob("v*/model.json"))
    meta = json.loads(meta_file.read_text())
    del meta["domain"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="trained before medpipe recorded domain"):
        predict(trained["files"][0], model="breast", model_store=str(old), secret=SECRET)


def test_store_needs_a_secret(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret"):
        predict(trained["files"][0], model="breast", model_store=trained["store"],
                store=str(tmp_path / "kept.zarr"))


def test_cli_json_on_a_folder_with_kept_store(trained: dict, tmp_path: Path) -> None:
    from medpipe.cli import app

    study = tmp_path / "study"
    study.mkdir()
    for f in trained["files"][10:13]:
        shutil.copy2(f, study / f.name)
    (study / "notes.txt").write_text("not an image\n")
    kept = str(tmp_path / "kept.zarr")
    args = ["predict", str(study), "--model", "breast", "--model-store", trained["store"],
            "--json", "--top", "3", "--store", kept]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"model", "estimator", "threshold", "store", "predictions",
                        "refused", "unread"}
    assert out["model"] == "breast:v1" and out["estimator"] == "logreg"
    assert out["store"] == kept and out["refused"] == []
    assert [u["file"] for u in out["unread"]] == ["notes.txt"]
    assert {p["series"] for p in out["predictions"]} == {
        _series_key(trained["store"], f) for f in trained["files"][10:13]}
    for p in out["predictions"]:
        prob, label = _score_of(trained["store"], "breast", p["series"])
        assert p["probability"] == pytest.approx(prob, rel=1e-9)
        assert p["predicted"] == label
        c = p["contributions"]
        assert c["method"] == LINEAR and len(c["top"]) == 3
        assert set(c["top"][0]) == {"feature", "value", "standardised", "contribution"}
    # the kept store holds the de-identified images and the feature table
    group = features_group(CONFIG)
    assert tables.has_table(kept, group)
    assert sorted(str(s) for s in tables.open_table(kept, group)["sample"].values) == sorted(
        p["series"] for p in out["predictions"])
    # no identifier of the export's headers in the output or anywhere in the kept store
    phi = set()
    for f in trained["files"][10:13]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        phi |= {str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber),
                str(ds.InstitutionName), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)}
    phi.discard("")
    blobs = b"".join(p.read_bytes() for p in Path(kept).rglob("*") if p.is_file())
    assert not [v for v in phi if v in result.stdout or v.encode() in blobs]
    # again into the same store: the rows are replaced, not duplicated
    assert CliRunner().invoke(app, args).exit_code == 0
    assert tables.open_table(kept, group).sizes["sample"] == 3

    text = CliRunner().invoke(app, ["predict", str(trained["files"][0]), "--model", "breast",
                                    "--model-store", trained["store"]])
    assert text.exit_code == 0, text.output
    words = " ".join(text.output.split())
    assert "probability" in words and "predicted label" in words
    refused = CliRunner().invoke(app, ["predict", get_testdata_file("MR_small.dcm"),
                                       "--model", "breast", "--model-store", trained["store"]])
    assert refused.exit_code == 2 and "modality MR" in " ".join(refused.output.split())


def test_explain_calibrated_svm_against_sklearn() -> None:
    """The SVM's contributions add up to the mean LinearSVC margin of its calibration
    folds, computed by scikit-learn's own ``decision_function``."""
    from sklearn.datasets import make_classification

    from medpipe.models.estimators import make_pipeline

    x, y = make_classification(n_samples=120, n_features=6, random_state=0)
    pipe = make_pipeline("svm").fit(x, y)
    e = explain(pipe, x[0], [f"f{i}" for i in range(6)])
    z = pipe[:-1].transform(x[:1])
    margins = [c.estimator.decision_function(z)[0]
               for c in pipe[-1].calibrated_classifiers_]
    assert e.units == "SVM margin"
    assert e.bias + sum(c.contribution for c in e.contributions) == pytest.approx(
        float(np.mean(margins)), rel=1e-9)
