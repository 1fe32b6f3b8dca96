"""The ``cnn`` feature family (issue 12): a registered CNN's penultimate-layer embeddings
as features, with no training row embedded by a network that saw it.

Real images (pydicom's MR and CT slices cut into 28x28 patches, 3 per patient; see
``tests/models/conftest.py``), a narrow CNN trained for a few epochs, a 2-worker
``LocalCluster`` for the embedding ``map_blocks``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dask
import numpy as np
import pytest
from dask_ml.wrappers import ParallelPostFit
from sklearn.pipeline import Pipeline

from medpipe.errors import ConfigError, ModelError
from medpipe.features import FeatureConfig
from medpipe.features import cnn as fcnn
from medpipe.features.dataset import open_features
from medpipe.features.registry import family_names
from medpipe.models import cnn
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.cnn import CNNClassifier
from medpipe.models.train import train_model
from tests.models.conftest import SECRET, grouped_store, tiny_npz  # noqa: F401 - fixtures

#: a few epochs of a narrow network
FAST = {"epochs": 3, "width": 8, "depth": 2, "augment": "light"}


pytestmark = pytest.mark.usefixtures("jax_cache")  # tests/conftest.py


@pytest.fixture(scope="module")
def registered(grouped_store: dict) -> dict:  # noqa: F811 - the imported fixture
    """A CNN fitted on the table's ``train`` rows and registered with its lineage."""
    store, group = grouped_store["store"], grouped_store["features"]
    labels = lab.read_labels(grouped_store["archive"] / "labels.csv", secret=SECRET)
    path = lab.write_labels(store, labels)
    table = lab.join_labels(open_features(store, group), labels)
    split = np.array([str(s) for s in table["split"].values])
    train = np.flatnonzero(split == "train")
    names = [str(f) for f in table["feature"].values]
    x = table["features"].values
    cols = cnn.pixel_columns(names)
    clf = CNNClassifier(columns=cols, random_state=0, **FAST)
    clf.fit(x[train], table["label"].values[train].astype(int))
    model = ParallelPostFit(estimator=Pipeline([("variance", None), ("scale", None),
                                                ("clf", clf)]))
    meta = {"estimator": "cnn", "feature_names": names, "features_group": group,
            "labels": {"path": path, "split_used": "train", "n_train": len(train)}}
    version = reg.save_model(store, "embedcnn", model, meta)
    return {**grouped_store, "version": version, "clf": clf, "x": x, "split": split,
            "train": train}


def _row_digest(row: np.ndarray) -> str:
    return hashlib.blake2b(np.asarray(row, np.float64).tobytes(), digest_size=12).hexdigest()


def test_plan_embedders_holds_each_training_row_out() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 3)
    y = np.repeat(rng.integers(0, 2, 30), 3)
    seen = np.repeat(rng.random(30) < 0.7, 3)
    which, rows = fcnn.plan_embedders(seen, y, groups, folds=3, seed=0)
    assert len(rows) == 3
    np.testing.assert_array_equal(which[~seen], -1)  # never seen: the final model
    assert (which[seen] >= 0).all()
    for k, tr in enumerate(rows):
        held = np.flatnonzero(which == k)
        assert not set(held) & set(tr)  # fold k's network never trains on what it embeds
        assert not set(groups[held]) & set(groups[tr])  # nor on the same patient
        assert set(tr) | set(held) == set(np.flatnonzero(seen))
    with pytest.raises(ConfigError, match="folds"):
        fcnn.plan_embedders(seen, y, groups, folds=1, seed=0)


def test_the_family_is_registered_but_not_a_config_family() -> None:
    assert "cnn" in family_names()
    with pytest.raises(ConfigError, match="cnn_features"):
        FeatureConfig(families=("firstorder", "cnn")).feature_names()


@pytest.fixture(scope="module")
def embedded(registered: dict) -> dict:
    """``cnn_features`` run in this process, its fold fits spied on: the rows each fold
    network trained on, by their content."""
    trained_on: dict[str, set[str]] = {}  # fold network's SHA-256 -> digests of its rows
    real_fit = fcnn._fit_fold

    def spy(xf, yf, gf, params):
        data = real_fit(xf, yf, gf, params)
        trained_on[hashlib.sha256(data).hexdigest()] = {_row_digest(r) for r in xf}
        return data

    with pytest.MonkeyPatch.context() as mp, dask.config.set(scheduler="synchronous"):
        mp.setattr(fcnn, "_fit_fold", spy)
        out = fcnn.cnn_features(registered["store"], model="embedcnn", folds=2, seed=0,
                                block_rows=16)  # 5 blocks
    return {"out": out, "trained_on": trained_on}


def test_no_training_row_is_embedded_by_a_network_that_saw_it(
        registered: dict, embedded: dict) -> None:
    store, x, split = registered["store"], registered["x"], registered["split"]
    cols = np.asarray(registered["clf"].columns)
    out, trained_on = embedded["out"], embedded["trained_on"]
    table = open_features(store, out["group"])
    lineage = json.loads(table.attrs["cnn"])
    assert lineage["model"] == f"embedcnn:{registered['version']}"
    assert lineage["sha256"] == reg.read_model_json(store, "embedcnn")["sha256"]
    assert len(lineage["fold_sha256"]) == 2 and set(lineage["fold_sha256"]) == set(trained_on)
    final_rows = {_row_digest(r) for r in x[registered["train"]][:, cols]}
    by = [str(b) for b in table["embedded_by"].values]
    order = [str(s) for s in table["sample"].values]
    assert order == [str(s) for s in open_features(store, registered["features"])["sample"]
                     .values]
    for i, (b, s) in enumerate(zip(by, split, strict=True)):
        digest = _row_digest(x[i, cols])
        if b == fcnn.FINAL:
            assert s != "train"  # the final network saw every training row
            assert digest not in final_rows
        else:
            assert s == "train"
            sha = lineage["fold_sha256"][int(b.split("-")[1])]
            assert digest not in trained_on[sha], (i, b)  # the leak this design prevents
    assert sum(b != fcnn.FINAL for b in by) == len(registered["train"])
    # the fold networks are kept beside the model, with the samples each trained on
    folds = json.loads(reg.read_model_file(
        store, "embedcnn", registered["version"], f"oof/{lineage['plan']}/folds.json"))
    assert folds["sha256"] == lineage["fold_sha256"]
    for k, names in enumerate(folds["trained_on"]):
        assert not {s for s, b in zip(order, by, strict=True) if b == f"fold-{k}"} & set(names)


def test_embeddings_on_the_cluster_match_keras(registered: dict, client) -> None:
    store, x = registered["store"], registered["x"]
    # the fold networks of the same plan are reused (read back, SHA-256 checked); one
    # block, so one worker pays for importing and compiling
    out = fcnn.cnn_features(store, model=f"embedcnn:{registered['version']}", folds=2,
                            block_rows=128)
    table = open_features(store, out["group"])
    names = [str(f) for f in table["feature"].values]
    emb_names = [n for n in names if n.startswith("cnn_embedcnn_")]
    assert emb_names == out["features"] and len(emb_names) == 16  # width 8 x 2**(depth-1)
    # the source table's features come first, unchanged
    src = open_features(store, registered["features"])
    np.testing.assert_array_equal(table["features"].values[:, : src.sizes["feature"]],
                                  src["features"].values)
    # rows the CNN never saw: the registered model's pool layer, as Keras computes it
    keras = cnn.backend.keras()
    net = registered["clf"].model_
    ref = keras.Model(net.inputs, net.get_layer("pool").output)
    held = np.flatnonzero(registered["split"] != "train")
    img = registered["clf"].images(x[held])
    want = np.asarray(ref.predict(img, verbose=0))
    got = table["features"].sel(feature=emb_names).values[held]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # training rows: embedded out of fold, so not the final network's embedding
    tr = registered["train"]
    own = np.asarray(ref.predict(registered["clf"].images(x[tr]), verbose=0))
    assert np.abs(table["features"].sel(feature=emb_names).values[tr] - own).max() > 1e-3


def test_a_linear_svm_on_cnn_plus_handcrafted_features_is_an_ordinary_train(
        registered: dict, embedded: dict) -> None:
    store = registered["store"]
    group = embedded["out"]["group"]
    assert group == fcnn.cnn_group(registered["features"], "embedcnn", registered["version"])
    res = train_model(store, name="hybrid", features=group,
                      labels=registered["archive"] / "labels.csv", secret=SECRET,
                      estimator="svm", n_splits=2, outer_folds=0, n_boot=20)
    meta = reg.read_model_json(store, "hybrid")
    assert res["estimator"] == "svm" and meta["features_group"] == group
    assert any(n.startswith("cnn_embedcnn_") for n in meta["feature_names"])
    assert any(n.startswith("firstorder_") for n in meta["feature_names"])
    assert 0.0 <= res["cv_auc"] <= 1.0


def test_a_non_cnn_model_is_refused(registered: dict) -> None:
    from sklearn.linear_model import LogisticRegression

    store, x = registered["store"], registered["x"]
    y = np.arange(len(x)) % 2
    reg.save_model(store, "plain", ParallelPostFit(estimator=LogisticRegression().fit(x, y)),
                   {"estimator": "logreg", "feature_names": []})
    with pytest.raises(ModelError, match="not a CNN"):
        fcnn.cnn_features(store, model="plain")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def test_missing_pixels_are_a_clear_error(registered: dict, tmp_path: Path) -> None:
    store = registered["store"]
    with pytest.raises(ConfigError, match="no feature table"):
        fcnn.cnn_features(store, model="embedcnn", features="features/nosuchtable")
