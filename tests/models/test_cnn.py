"""The ``cnn`` estimator (Keras 3 / JAX): it learns, is reproducible, and its registered
files load safely (issue 12).

Real images: a subset of the BreastMNIST train split vendored in ``medpipe/data``.
Training runs are a few epochs of a narrow network, on a 2-worker ``LocalCluster``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from dask_ml.wrappers import ParallelPostFit
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from medpipe.errors import ModelError, UntrustedModelError
from medpipe.features import FeatureConfig
from medpipe.features.pixels import pixel_features
from medpipe.models import cnn
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.cnn import CNNClassifier
from medpipe.models.cnn.classifier import RowGroups
from medpipe.models.cnn.saving import MODEL_FILE, keras_bytes
from medpipe.models.evaluation import evaluate_model
from medpipe.models.scoring import open_scores, score_model, scores_group
from medpipe.models.train import train_model
from tests.models.conftest import SECRET

#: a few epochs of a narrow network: enough to learn, fast enough for the suite
FAST = {"epochs": 12, "width": 8, "depth": 2, "augment": "light"}


pytestmark = pytest.mark.usefixtures("jax_cache")  # tests/conftest.py


@pytest.fixture(scope="module")
def breast() -> tuple[np.ndarray, np.ndarray]:
    """240 BreastMNIST training images (28x28 averaged to 14x14, as pixel rows), labels."""
    with np.load(str(files("medpipe") / "data" / "breastmnist_trainval.npz")) as z:
        img, lab = z["train_images"], z["train_labels"].ravel().astype(int)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(lab == c), n, replace=False)
                          for c, n in ((0, 80), (1, 160))])
    small = img[idx].astype(np.float64).reshape(len(idx), 14, 2, 14, 2).mean(axis=(2, 4))
    return small.reshape(len(idx), -1), lab[idx]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def fast_cnn():
    """The registered ``cnn`` kind with FAST training settings (same factory and grid)."""
    spec = est.get_estimator("cnn")

    def factory(*, large: bool, random_state: int) -> CNNClassifier:
        return spec.classifier(large=large, random_state=random_state).set_params(**FAST)

    est.unregister_estimator("cnn")
    est.register_estimator(est.Estimator("cnn", factory, spec.grid, vote=spec.vote))
    yield
    est.unregister_estimator("cnn")
    est.register_estimator(spec)


def test_pixel_columns_reshape_to_the_image() -> None:
    cfg = FeatureConfig(families=("firstorder", "pixels", "histogram"), pixels_size=6)
    names = cfg.feature_names()
    cols = cnn.pixel_columns(names)
    image = np.arange(36.0).reshape(6, 6) ** 1.5
    row = np.zeros(len(names))
    for n, v in pixel_features(image, size=6).items():
        row[names.index(n)] = v
    got = CNNClassifier(columns=cols).images(row[None])
    np.testing.assert_array_equal(got[0, :, :, 0], image.astype(np.float32))
    assert cnn.pixel_columns([n for n in names if n != "pixel_002_003"]) is None
    assert cnn.pixel_columns(FeatureConfig(families=("firstorder",)).feature_names()) is None


def test_all_leaves_the_cnn_out_and_cnn_trains_it() -> None:
    kinds = list(est.estimator_names())
    assert "cnn" in kinds and not est.get_estimator("cnn").vote
    names = FeatureConfig(families=("pixels", "firstorder"), pixels_size=8).feature_names()
    # --estimator all: the classic estimators and their vote (the demo's time budget)
    assert cnn.usable_kinds(kinds, names, explicit=False, n_samples=500) == [
        k for k in kinds if k != "cnn"]
    assert cnn.usable_kinds(["cnn"], names, explicit=True, n_samples=48) == ["cnn"]
    plain = FeatureConfig(families=("firstorder",)).feature_names()
    assert "cnn" not in cnn.usable_kinds(kinds, plain, explicit=False, n_samples=500)
    with pytest.raises(ModelError, match="'pixels' feature family"):
        cnn.usable_kinds(["cnn"], plain, explicit=True, n_samples=500)


def _fit_small(x: np.ndarray, y: np.ndarray, seed: int) -> CNNClassifier:
    return CNNClassifier(random_state=seed, **{**FAST, "epochs": 2}).fit(x[:96], y[:96])


def _draw_global_random(stop: threading.Event) -> None:
    while not stop.wait(0.001):  # a draw every millisecond, leaving the GIL to the fit
        np.random.random()  # noqa: NPY002 - NumPy's global generator is the point


def test_a_fixed_seed_gives_the_same_model(breast) -> None:
    x, y = breast
    order = np.random.default_rng(1).permutation(len(y))
    x, y = x[order], y[order]
    a = _fit_small(x, y, 7)
    # another thread drawing from NumPy's global generator during the fit (a Dask client,
    # a Prefect server in the same process) does not change the model
    stop = threading.Event()
    noise = threading.Thread(target=_draw_global_random, args=(stop,))
    noise.start()
    try:
        b = _fit_small(x, y, 7)
    finally:
        stop.set()
        noise.join()
    pa, pb = a.predict_proba(x[96:]), b.predict_proba(x[96:])
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-6)
    other = _fit_small(x, y, 8).predict_proba(x[96:])
    assert np.abs(other - pa).max() > 1e-4  # the seed does change the model
    assert pa.shape == (len(y) - 96, 2) and np.allclose(pa.sum(axis=1), 1)
    # travels to and from Dask workers as .keras bytes: same probabilities
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).predict_proba(x[96:]), pa)


def _registered(tmp_path: Path, breast) -> tuple[str, CNNClassifier, np.ndarray]:
    x, y = breast
    clf = _fit_small(x, y, 0)
    model = ParallelPostFit(estimator=Pipeline(
        [("variance", None), ("scale", None), ("clf", clf)]))
    store = str(tmp_path / "store.zarr")
    reg.save_model(store, "cnnmodel", model, {"estimator": "cnn", "feature_names": []})
    return store, clf, x[96:]


def test_save_load_round_trip(tmp_path: Path, breast) -> None:
    store, clf, x = _registered(tmp_path, breast)
    folder = tmp_path / "store.zarr" / reg.model_path("cnnmodel", "v1")
    meta = json.loads((folder / "model.json").read_text())
    data = (folder / MODEL_FILE).read_bytes()
    assert meta["model_file"] == MODEL_FILE and not (folder / "pipeline.skops").exists()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["cnn"]["params"]["width"] == 8 and meta["cnn"]["classes"] == [0, 1]
    loaded, _ = reg.load_model(store, "cnnmodel")
    np.testing.assert_array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    np.testing.assert_array_equal(est.positive_proba(loaded, x), clf.predict_proba(x)[:, 1])


def test_tampered_file_is_refused(tmp_path: Path, breast) -> None:
    store, _, _ = _registered(tmp_path, breast)
    path = tmp_path / "store.zarr" / reg.model_path("cnnmodel", "v1") / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        reg.load_model(store, "cnnmodel")


def _lambda_keras_file() -> bytes:
    keras = cnn.backend.keras()
    inp = keras.Input((14, 14, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras_bytes(keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)))


def test_a_lambda_layer_is_refused(tmp_path: Path, breast) -> None:
    store, _, _ = _registered(tmp_path, breast)
    folder = tmp_path / "store.zarr" / reg.model_path("cnnmodel", "v1")
    # even with a matching SHA-256 (someone rewrote both files), nothing is built
    evil = _lambda_keras_file()
    (folder / MODEL_FILE).write_bytes(evil)
    meta = json.loads((folder / "model.json").read_text())
    meta["sha256"] = hashlib.sha256(evil).hexdigest()
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UntrustedModelError, match="Lambda layer"):
        reg.load_model(store, "cnnmodel")
    # and Keras's own safe mode refuses the file too
    keras = cnn.backend.keras()
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(folder / MODEL_FILE, safe_mode=True)


def test_early_stopping_split_keeps_patients_together() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 16))
    y = np.repeat([0, 1], 30)
    groups = np.repeat(np.arange(20), 3)  # 3 rows per patient
    rows = RowGroups(x, groups)
    np.testing.assert_array_equal(rows(x[::-1]), groups[::-1].astype(str))
    assert rows(x[:1] + 1.0)[0] == "row-0"  # an unknown row is its own patient
    tr, va = CNNClassifier(validation_fraction=0.2)._inner_split(y, rows(x))
    assert not set(groups[tr]) & set(groups[va])
    assert len(va) == 12 and set(y[va]) == {0, 1}


def test_weights_hook_loads_a_local_checkpoint(breast, tmp_path: Path) -> None:
    x, y = breast
    a = _fit_small(x, y, 0)
    path = tmp_path / "pretrained.weights.h5"
    a.model_.save_weights(path)
    b = CNNClassifier(weights=str(path), **{**FAST, "epochs": 0}).fit(x[:96], y[:96])
    np.testing.assert_allclose(b.predict_proba(x[96:]), a.predict_proba(x[96:]), atol=1e-6)
    fresh = CNNClassifier(**{**FAST, "epochs": 0}).fit(x[:96], y[:96])
    assert np.abs(fresh.predict_proba(x[96:]) - a.predict_proba(x[96:])).max() > 1e-4
    with pytest.raises(ModelError, match="cannot load weights"):
        CNNClassifier(weights=str(tmp_path / "missing.weights.h5"), epochs=0).fit(x, y)



def test_parallel_search_learns(breast, client, fast_cnn) -> None:
    x, y = breast
    groups = np.arange(len(y))  # MedMNIST: every image is its own patient
    folds = est.grouped_folds(y, groups, n_splits=2, seed=0)  # 2 candidates x 2 folds
    res = est.search("cnn", x, y, groups, folds=folds, random_state=0)
    assert [c["params"]["clf__recipe"] for c in res.candidates] == ["fixed", "early_stopping"]
    assert all(c["params"]["variance"] is None for c in res.candidates)
    # both candidates trained (one per worker), scored by patient-grouped CV AUC
    assert res.best_score == max(c["mean_auc"] for c in res.candidates)
    assert res.best_score > 0.6, res.candidates  # chance is 0.5


def test_train_score_evaluate_a_cnn_model(grouped_store: dict, client, fast_cnn) -> None:
    store, archive = grouped_store["store"], grouped_store["archive"]
    out = train_model(store, name="tinycnn", features=grouped_store["features"],
                      labels=archive / "labels.csv", secret=SECRET, estimator="cnn",
                      n_splits=2, outer_folds=0, n_boot=20)
    assert out["estimator"] == "cnn" and set(out["search"]) == {"cnn"}
    fitted, meta = reg.load_model(store, "tinycnn")
    assert meta["model_file"] == MODEL_FILE
    # a table with histogram and first-order features too: the CNN reads its 14x14 pixels
    assert len(meta["cnn"]["params"]["columns"]) == 14 * 14
    assert meta["cv"]["auc"]["ci_low"] <= meta["cv"]["auc"]["value"]

    res = score_model(store, model="tinycnn")
    table = open_scores(store, scores_group("tinycnn", meta["version"])).load()
    assert res["scored"] == table.sizes["sample"] == 72
    from medpipe.models.common import feature_table

    feats = feature_table(store, meta["features_group"]).sel(feature=meta["feature_names"])
    feats = feats.sel(sample=table["sample"].values)
    want = fitted.predict_proba(feats["features"].values)[:, 1]
    np.testing.assert_allclose(table["probability"].values, want, rtol=0, atol=1e-6)

    # evaluate: the val AUC of the same probabilities
    labelled = lab.join_labels(feats, lab.read_stored_labels(store, meta["labels"]["path"]))
    val = np.array([str(s) for s in labelled["split"].values]) == "val"
    ev = evaluate_model(store, model="tinycnn", split="val", n_boot=20)
    assert ev["n"] == int(val.sum()) == 24
    assert ev["metrics"]["auc"]["value"] == pytest.approx(
        roc_auc_score(labelled["label"].values[val].astype(int), want[val]), abs=1e-9)
