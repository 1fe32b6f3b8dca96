"""k > 2 class labels for every estimator (issue 12, "Multi-class labels").

Two real 3-class tasks on a real 2-worker ``LocalCluster``:

* the IBSI sarcoma archive's modality (CT / MR / PET) in ``../shared/data`` (skipped
  with the reason where it is absent): 12 patients, one series of each modality, the
  tumour ROI's first-order features; labels are class *names*;
* without shared data, 28x28 patches of three real images the packages bundle
  (pydicom's MR and CT slices, scikit-image's camera): the class is the source image,
  three patches per invented patient; labels are integer *codes* 0/1/2.

The metrics are compared with scikit-learn's on the same predictions, and the
bootstrap is checked to resample patients (a patient's rows move together).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression as SkLogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    recall_score,
    roc_auc_score,
)

from medpipe.deid import pseudonym
from medpipe.errors import ConfigError, ModelError
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import metrics as met
from medpipe.models import multiclass as mc
from medpipe.models import registry as reg
from medpipe.models.common import feature_table, load_ref, strings
from medpipe.models.evaluation import compare_models, patient_groups
from medpipe.models.train import evaluate_model, open_scores, score_model, train_model

from ..conftest import shared_data_dir
from ..store.test_tables import assert_spec_strings
from .conftest import SECRET

# ----------------------------------------------------------------------------- labels


def test_labels_accept_class_names_and_integer_codes(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    pd.DataFrame({"PatientID": ["a", "b", "c", "d", "e"],
                  "label": ["PT", "CT", " MR", "", "CT"]}).to_csv(p, index=False)
    got = lab.read_labels(p, secret=SECRET)
    assert lab.label_classes(got) == ["CT", "MR", "PT"]  # alphabetical, codes 0..2
    by_key = dict(zip(got["key"], zip(got["label"], got["class"], strict=True), strict=True))
    assert by_key[pseudonym("a", secret=SECRET, kind="patient")] == (2, "PT")
    assert by_key[pseudonym("c", secret=SECRET, kind="patient")] == (1, "MR")
    assert len(got) == 4  # the empty label is an unlabelled row
    # the class names are stored (and hashed) with the table
    store = str(tmp_path / "s.zarr")
    back = lab.read_stored_labels(store, lab.write_labels(store, got))
    assert lab.label_classes(back) == ["CT", "MR", "PT"]
    renamed = got.assign(**{"class": got["class"].str.lower()})
    assert lab.labels_hash(renamed) != lab.labels_hash(got)

    pd.DataFrame({"PatientID": ["a", "b", "c"], "label": [2, 0, 1]}).to_parquet(
        tmp_path / "l.parquet")
    codes = lab.read_labels(tmp_path / "l.parquet", secret=SECRET)
    assert lab.label_classes(codes) == ["0", "1", "2"]
    assert sorted(codes["label"]) == [0, 1, 2]
    # a held-out file lacking a class keeps the model's codes
    pd.DataFrame({"PatientID": ["x"], "label": ["PT"]}).to_csv(p, index=False)
    held = lab.read_labels(p, secret=SECRET, classes=["CT", "MR", "PT"])
    assert held["label"].tolist() == [2] and lab.label_classes(held) == ["PT"]
    with pytest.raises(ConfigError, match=r"not among the model's classes"):
        lab.read_labels(p, secret=SECRET, classes=["CT", "MR"])


def test_binary_labels_are_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    pd.DataFrame({"PatientID": ["a", "b", "c"], "label": ["1", "0", "1.0"],
                  "split": ["train"] * 3}).to_csv(p, index=False)
    got = lab.read_labels(p, secret=SECRET)
    assert list(got.columns) == ["kind", "key", "label", "split"]  # no class column
    assert lab.label_classes(got) == [0, 1]
    rows = got[["kind", "key", "label", "split"]].sort_values(["kind", "key"])
    import hashlib

    assert lab.labels_hash(got) == hashlib.sha256(
        rows.to_csv(index=False).encode()).hexdigest()[:12]  # the hash of before


@pytest.mark.parametrize(("labels", "message"), [
    ([1, 2], "0 or 1"),                       # integer codes must be 0 .. k-1
    ([0, 2, 3], "0 .. k-1"),
    (["CT", "CT"], "at least 2 classes"),
    (["0", "CT"], "mix numbers"),
    ([0.5, 1], "0 or 1"),
])
def test_bad_class_labels(tmp_path: Path, labels: list, message: str) -> None:
    p = tmp_path / "bad.csv"
    pd.DataFrame({"PatientID": [str(i) for i in range(len(labels))],
                  "label": labels}).to_csv(p, index=False)
    with pytest.raises(ConfigError, match=message):
        lab.read_labels(p, secret=SECRET)


def test_two_labels_for_one_key(tmp_path: Path) -> None:
    p = tmp_path / "clash.csv"
    pd.DataFrame({"PatientID": ["a", "a", "b"], "label": ["CT", "MR", "PT"]}).to_csv(p)
    with pytest.raises(ConfigError, match="two different labels"):
        lab.read_labels(p, secret=SECRET)


# ----------------------------------------------------------------------------- metrics


def _predictions(n_patients: int = 40, per: int = 3, k: int = 3, seed: int = 0):
    """Realistic k-class probabilities: a patient's rows share the class and look alike."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, k, n_patients), per)
    groups = np.repeat([f"p{i:03d}" for i in range(n_patients)], per)
    logits = rng.normal(size=(y.size, k)) + 1.2 * np.eye(k)[y]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, prob, groups


def test_multiclass_metrics_match_scikit_learn() -> None:
    y, prob, groups = _predictions()
    names = ["CT", "MR", "PT"]
    m = met.classification_metrics(y, prob, classes=names, n_boot=200, seed=1, groups=groups)
    pred = prob.argmax(axis=1)
    assert m["auc"]["value"] == pytest.approx(
        roc_auc_score(y, prob, multi_class="ovr", average="macro"), abs=1e-12)
    for c, n in enumerate(names):
        assert m[f"auc_{n}"]["value"] == pytest.approx(roc_auc_score(y == c, prob[:, c]),
                                                       abs=1e-12)
    np.testing.assert_allclose([m[f"sensitivity_{n}"]["value"] for n in names],
                               recall_score(y, pred, average=None))
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, prob, labels=[0, 1, 2]))
    for k in met.metric_keys(m):
        assert m[k]["ci_low"] <= m[k]["value"] <= m[k]["ci_high"], k
    assert m["support"]["decision"] == "argmax" and m["support"]["n_patients"] == 40
    c = met.confusion(y, prob, classes=names)
    assert c["matrix"] == confusion_matrix(y, pred).tolist() and c["classes"] == names
    lines = met.confusion_lines(c)
    assert lines[1].split() == names and lines[2].split()[1:] == [
        str(v) for v in confusion_matrix(y, pred)[0]]
    # the Prefect artifacts of train / evaluate list every metric
    from medpipe.report import metrics_markdown, metrics_rows

    assert [r["metric"] for r in metrics_rows(m)] == met.metric_keys(m)
    assert "- AUC MR vs rest" in metrics_markdown("modality", m)
    # binary input still goes to binary_metrics, untouched
    p1 = prob[:, 1] / prob[:, :2].sum(axis=1)
    yb = (y == 1).astype(int)
    assert met.classification_metrics(yb, p1, threshold=0.4, n_boot=50) == \
        met.binary_metrics(yb, p1, threshold=0.4, n_boot=50)
    assert met.auc_score(yb, p1) == roc_auc_score(yb, p1)


def test_multiclass_cis_resample_patients() -> None:
    """Each patient's three identical rows are drawn together: the CIs equal those of
    one row per patient resampled by rows, and are wider than a row bootstrap's."""
    y1, p1, _ = _predictions(n_patients=30, per=1, seed=3)
    names = ["a", "b", "c"]
    y3, p3 = np.repeat(y1, 3), np.repeat(p1, 3, axis=0)
    g3 = np.repeat(np.arange(30), 3).astype(str)
    one = met.multiclass_metrics(y1, p1, classes=names, n_boot=300, seed=7)
    clustered = met.multiclass_metrics(y3, p3, classes=names, n_boot=300, seed=7, groups=g3)
    rows = met.multiclass_metrics(y3, p3, classes=names, n_boot=300, seed=7)
    for k in ("auc", "accuracy", "auc_a", "sensitivity_c"):
        assert clustered[k]["value"] == pytest.approx(one[k]["value"])
        assert clustered[k]["ci_low"] == pytest.approx(one[k]["ci_low"]), k
        assert clustered[k]["ci_high"] == pytest.approx(one[k]["ci_high"]), k
    width = {n: m["auc"]["ci_high"] - m["auc"]["ci_low"] for n, m in
             (("clustered", clustered), ("rows", rows))}
    assert width["rows"] < 0.8 * width["clustered"]
    assert clustered["support"]["bootstrap"] == "patient (cluster)"
    assert clustered["support"]["n_patients"] == 30


def test_logreg_is_multinomial_for_k_classes() -> None:
    """dask-ml's logistic regression is binary only: k classes get scikit-learn's."""
    with mc.training_classes(3):
        pipe = est.make_pipeline("logreg")
    assert isinstance(pipe[-1], SkLogisticRegression)
    assert not isinstance(est.make_pipeline("logreg")[-1], SkLogisticRegression)


# ----------------------------------------------------------------------------- stores


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def _three_source_npz(path: Path, *, n_train: int = 54, n_val: int = 27) -> Path:
    """Patches of pydicom's MR and CT slices and scikit-image's camera; the class is the
    source, the same for the 3 consecutive patches of one (invented) patient."""
    import pydicom
    from pydicom.data import get_testdata_file
    from skimage import data

    sources = [pydicom.dcmread(get_testdata_file(n)).pixel_array.astype(float)
               for n in ("MR_small.dcm", "CT_small.dcm")] + [data.camera().astype(float)]
    sources = [(a - a.min()) / (a.max() - a.min()) * 255 for a in sources]
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (np.arange(n) // 3) % 3
        out = np.empty((n, 28, 28), np.uint8)
        for i, c in enumerate(y):
            a = sources[c]
            r, col = rng.integers(0, np.array(a.shape) - 28)
            out[i] = np.clip(a[r:r + 28, col:col + 28], 0, 255).astype(np.uint8)
        return out, y.astype(np.uint8)

    xt, yt = split(n_train)
    xv, yv = split(n_val)
    np.savez(path, train_images=xt, train_labels=yt[:, None], val_images=xv,
             val_labels=yv[:, None])
    return path


@pytest.fixture(scope="module")
def bundled_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from medpipe import ingest
    from medpipe.features import FeatureConfig
    from medpipe.features.dataset import feature_table as compute
    from medpipe.features.dataset import features_group, write_features
    from medpipe.sample import build_medmnist_archive

    root = tmp_path_factory.mktemp("threeclass")
    npz = _three_source_npz(root / "three.npz")
    archive = build_medmnist_archive(npz, root / "archive", name="threeclass",
                                     images_per_patient=3)
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    cfg = FeatureConfig(families=("histogram", "firstorder"))
    group = features_group(cfg)
    write_features(compute(store, config=cfg), store=store, path=group)
    return {"store": store, "features": group, "labels": archive / "labels.csv",
            "classes": ["0", "1", "2"]}


@pytest.fixture(scope="module")
def ibsi_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The IBSI sarcoma archive ingested; labels = the series' DICOM Modality."""
    import pydicom

    from medpipe import ingest
    from medpipe.features import FeatureConfig
    from medpipe.features.dataset import feature_table as compute
    from medpipe.features.dataset import features_group, write_features

    archive = shared_data_dir() / "dicom" / "ibsi_sts"
    if not archive.is_dir():
        pytest.skip(f"the IBSI sarcoma archive is not at {archive} (set MEDPIPE_SHARED_DATA)")
    root = tmp_path_factory.mktemp("ibsi_modality")
    rows = []
    for i, patient in enumerate(sorted(p.name for p in archive.glob("STS_*"))):
        for folder in ("CT", "MR_T1", "PET"):
            ds = pydicom.dcmread(next((archive / patient / folder / "image").glob("*.dcm")),
                                 stop_before_pixels=True)
            rows.append({"SeriesInstanceUID": ds.SeriesInstanceUID, "label": ds.Modality,
                         "split": "train" if i < 10 else "val"})
    labels = root / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    cfg = FeatureConfig(families=("firstorder",))
    group = features_group(cfg)
    write_features(compute(store, config=cfg), store=store, path=group)
    return {"store": store, "features": group, "labels": labels,
            "classes": ["CT", "MR", "PT"]}


def _val_predictions(store: str, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's class matrix on its val rows, computed here (not by evaluate)."""
    fitted, meta = load_ref(store, model)
    table = lab.join_labels(feature_table(store, meta["features_group"]),
                            lab.read_stored_labels(store, meta["labels"]["path"]))
    rows = np.flatnonzero(np.isfinite(table["label"].values)
                          & (strings(table["split"]) == "val"))
    x = table["features"].isel(sample=rows).sel(feature=meta["feature_names"]).values
    return (table["label"].values[rows].astype(int), np.asarray(est.positive_proba(fitted, x)),
            patient_groups(table)[rows])


def _check_evaluation(store: str, model: str, classes: list[str]) -> None:
    y, prob, groups = _val_predictions(store, model)
    assert prob.shape == (len(y), len(classes))
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    out = evaluate_model(store, model=model, split="val", n_boot=200)
    m = out["metrics"]
    assert out["classes"] == classes and out["decision"] == "argmax"
    assert out["n_patients"] == len(np.unique(groups))
    if len(np.unique(y)) == len(classes):
        assert m["auc"]["value"] == pytest.approx(
            roc_auc_score(y, prob, multi_class="ovr", average="macro"), abs=1e-9)
    for c, n in enumerate(classes):
        assert m[f"auc_{n}"]["value"] == pytest.approx(roc_auc_score(y == c, prob[:, c]),
                                                       abs=1e-9)
    assert out["confusion"]["matrix"] == confusion_matrix(
        y, prob.argmax(axis=1), labels=list(range(len(classes)))).tolist()
    np.testing.assert_allclose([m[f"sensitivity_{n}"]["value"] for n in classes],
                               recall_score(y, prob.argmax(axis=1), average=None))
    saved = json.loads((Path(store) / out["report"]).read_text())
    assert saved["metrics"]["auc"] == m["auc"]
    assert (Path(store) / out["roc"]).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ModelError, match="binary models"):
        compare_models(store, model_a=model, model_b=model, split="val", n_boot=10)


def _check_scores(store: str, model: str, classes: list[str]) -> None:
    out = score_model(store, model=model)
    scores = open_scores(store, out["group"]).load()
    assert scores["probability"].dims == ("sample", "class")
    assert [str(c) for c in scores["class"].values] == classes
    prob = scores["probability"].values
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    np.testing.assert_array_equal(scores["predicted"].values, prob.argmax(axis=1))
    assert scores.attrs["decision"] == "argmax"
    assert_spec_strings(Path(store) / out["group"])
    assert score_model(store, model=model)["scored"] == 0  # incremental, as binary


def test_every_estimator_on_bundled_images(client, bundled_store: dict) -> None:
    """svm, logreg, rf and their soft vote train on 3 classes; argmax decision."""
    s = bundled_store
    out = train_model(s["store"], name="source", features=s["features"], labels=s["labels"],
                      secret=SECRET, estimator="all", n_splits=2, outer_folds=0, n_boot=100)
    assert set(out["search"]) == {"svm", "logreg", "rf", "ensemble"}
    meta = reg.read_model_json(s["store"], "source", out["version"])
    assert meta["classes"] == s["classes"] and meta["decision"] == "argmax"
    assert "threshold" not in meta
    assert meta["labels"]["n_per_class"] == {"0": 18, "1": 18, "2": 18}
    for kind, r in meta["search"].items():  # the macro one-vs-rest AUC of each search
        assert 0.7 < r["best_auc"] <= 1.0, kind
    assert meta["metrics"]["cv"]["auc"]["value"] > 0.7
    assert len(meta["confusion"]["cv"]["matrix"]) == 3
    assert set(meta["calibration"]["cv"]["per_class"]) == set(s["classes"])
    # each of the three searched kinds fits k classes on its own
    fitted, _ = load_ref(s["store"], "source")
    assert mc.n_classes(fitted) == 3
    _check_scores(s["store"], "source", s["classes"])
    # the QA report's model section: the multi-class Brier score of the held-out scores
    from medpipe.report.model import model_section

    lines, figures, _, brier, on = model_section(s["store"], meta)
    y, prob, _ = _val_predictions(s["store"], "source")
    assert brier == pytest.approx(brier_score_loss(y, prob, labels=[0, 1, 2]))
    assert "held-out" in on and figures["calibration.png"][:4] == b"\x89PNG"
    assert any(line.startswith("cross-validation: AUC") for line in lines)


def test_nested_cv_evaluate_and_show_on_bundled_images(client, bundled_store: dict) -> None:
    from typer.testing import CliRunner

    from medpipe.cli import app

    s = bundled_store
    out = train_model(s["store"], name="source-lr", features=s["features"],
                      labels=s["labels"], secret=SECRET, estimator="logreg", n_splits=3,
                      outer_folds=2, n_boot=100)
    meta = reg.read_model_json(s["store"], "source-lr", out["version"])
    assert meta["cv"]["method"] == "nested" and len(meta["cv"]["outer"]) == 2
    assert all(0.5 < f["auc"] <= 1.0 for f in meta["cv"]["outer"])
    assert out["cv_auc"] == pytest.approx(np.mean([f["auc"] for f in meta["cv"]["outer"]]))
    _check_evaluation(s["store"], "source-lr", s["classes"])
    shown = CliRunner().invoke(app, ["models", "show", s["store"], "source-lr"])
    assert shown.exit_code == 0, shown.output
    for text in ("classes: 0, 1, 2 (decision: argmax)", "AUC 1 vs rest",
                 "Sensitivity 2", "rows true, columns predicted"):
        assert text in shown.output
    ev = CliRunner().invoke(app, ["evaluate", s["store"], "--model", "source-lr",
                                  "--split", "val", "--n-boot", "50"])
    assert ev.exit_code == 0, ev.output
    for text in ("0 9, 1 9, 2 9", "AUC 0 vs rest", "rows true, columns predicted"):
        assert text in ev.output


def test_ibsi_modality(ibsi_store: dict, client) -> None:
    """CT / MR / PET of the IBSI sarcoma archive from the tumour's first-order features."""
    s = ibsi_store
    out = train_model(s["store"], name="modality", features=s["features"],
                      labels=s["labels"], secret=SECRET, estimator="logreg", n_splits=3,
                      outer_folds=2, n_boot=200)
    meta = reg.read_model_json(s["store"], "modality", out["version"])
    assert meta["classes"] == s["classes"]
    assert meta["labels"]["n_per_class"] == {"CT": 10, "MR": 10, "PT": 10}
    assert meta["labels"]["n_patients"] == 10
    cv = meta["metrics"]["cv"]
    assert cv["auc"]["value"] > 0.9 and cv["support"]["n_patients"] == 10
    assert cv["support"]["bootstrap"] == "patient (cluster)"
    _check_evaluation(s["store"], "modality", s["classes"])
    _check_scores(s["store"], "modality", s["classes"])


def test_cnn_trains_k_classes(tmp_path: Path) -> None:
    """The CNN's softmax layer has one unit per class: 3 classes train and predict."""
    from medpipe.models.cnn import CNNClassifier, pixel_columns

    with np.load(_three_source_npz(tmp_path / "three.npz", n_train=60, n_val=30)) as d:
        xt, yt, xv, yv = (d["train_images"], d["train_labels"].ravel(), d["val_images"],
                          d["val_labels"].ravel())

    def pixels(img: np.ndarray) -> np.ndarray:  # 7 x 7 means, as the pixels family
        return img.astype(float).reshape(len(img), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(
            len(img), -1)

    names = [f"pixel_{r:03d}_{c:03d}" for r in range(7) for c in range(7)]
    clf = CNNClassifier(columns=pixel_columns(names), epochs=6, width=4, depth=1,
                        augment="light", random_state=0).fit(pixels(xt), yt)
    assert list(clf.classes_) == [0, 1, 2]
    prob = est.positive_proba(clf, pixels(xv))
    assert prob.shape == (len(yv), 3)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert roc_auc_score(yv, prob, multi_class="ovr") > 0.6
