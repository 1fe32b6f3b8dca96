"""Issue 11's acceptance for ``sift``/``orb``: the visual-word vocabulary is fitted in
the model pipeline on each fit's own training rows — a new one in every CV fold,
never on a held-out row — and the registered model file holds it.

A real store: BreastMNIST thumbnails (the file packaged with medpipe) as a DICOM export
with two images per patient, ingested, with a ``firstorder + orb + sift`` feature table,
then ``train_model`` with nested CV while every ``BagOfVisualWords.fit`` is recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.cluster import MiniBatchKMeans

from medpipe import ingest
from medpipe.features import FeatureConfig
from medpipe.features import keypoints as kp
from medpipe.features.dataset import feature_table, features_group, open_features, write_features
from medpipe.features.firstorder import STATISTICS_NAMES
from medpipe.features.visualwords import BagOfVisualWords
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.train import score_model, train_model
from medpipe.sample import build_medmnist_archive, packaged_medmnist

SECRET = b"test-secret"
FAMILIES = ("firstorder", "orb", "sift")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    npz = packaged_medmnist("breastmnist")
    if npz is None:
        pytest.skip("the packaged BreastMNIST file is not installed")
    root = tmp_path_factory.mktemp("kp")
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist", limit=36,
                                     splits=("train", "val"), images_per_patient=2)
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    cfg = FeatureConfig(families=FAMILIES)
    group = features_group(cfg)
    write_features(feature_table(store, config=cfg), store=store, path=group)

    fits: list[tuple[BagOfVisualWords, np.ndarray]] = []
    real_fit = BagOfVisualWords.fit

    def spy(self: BagOfVisualWords, X, y=None):  # noqa: N803
        out = real_fit(self, X, y)
        fits.append((self, np.array(X, copy=True)))
        return out

    mp = pytest.MonkeyPatch()
    mp.setattr(BagOfVisualWords, "fit", spy)
    try:
        res = train_model(store, name="kp", features=group, labels=archive / "labels.csv",
                          secret=SECRET, estimator="logreg", n_splits=3, outer_folds=2,
                          n_boot=20)
    finally:
        mp.undo()

    # the training matrix exactly as train_model builds it, and the held-out rows
    table = lab.join_labels(open_features(store, group),
                            lab.read_labels(archive / "labels.csv", secret=SECRET))
    split = np.array([str(s) for s in table["split"].values])
    x_all = np.asarray(table["features"].values, dtype=np.float64)
    names = [str(f) for f in table["feature"].values]
    train = np.flatnonzero(split == "train")
    assert np.isfinite(x_all[train]).all()  # so train_model kept every column
    return {"store": store, "res": res, "fits": fits, "names": names, "x": x_all[train],
            "x_val": x_all[split == "val"], "y": table["label"].values[train].astype(int),
            "patients": np.array([str(p) for p in table["patient"].values])[train]}


def _rows(x_fit: np.ndarray, x: np.ndarray) -> frozenset[int]:
    """Which training rows a step was fitted on, matched on the first-order columns.

    They come first and every step passes them through, so they identify a row in the
    input of the second (chained) step too; a KeyError means a row that is not a
    training row.
    """
    n = len(STATISTICS_NAMES)
    index = {row.tobytes(): i for i, row in enumerate(x[:, :n])}
    assert len(index) == len(x)
    return frozenset(index[row.tobytes()] for row in np.asarray(x_fit)[:, :n])


def _reference_centres(x: np.ndarray, names: list[str], family: str) -> np.ndarray:
    """scikit-learn's MiniBatchKMeans on the rows' descriptors, decoded by column name."""
    n = x[:, names.index(f"{family}_keypoints")].astype(int)
    first = names.index(f"{family}_d00_000")
    size = 128 if family == "sift" else 32
    block = x[:, first : first + kp.MAX_KEYPOINTS * size].reshape(len(x), kp.MAX_KEYPOINTS, size)
    desc = np.concatenate([b[:k] for b, k in zip(block, n, strict=True)])
    if family == "orb":
        desc = np.unpackbits(desc.astype(np.uint8), axis=1)
    km = MiniBatchKMeans(n_clusters=kp.N_WORDS, random_state=0, batch_size=1024,
                         max_iter=100, n_init=3)
    return km.fit(desc.astype(np.float64)).cluster_centers_


def test_every_fold_fits_its_own_vocabulary_on_its_training_rows(trained: dict) -> None:
    x, names, fits = trained["x"], trained["names"], trained["fits"]
    assert fits, "no vocabulary was fitted inside the model pipeline"
    vocab: dict[tuple[str, frozenset[int]], np.ndarray] = {}
    for bovw, x_fit in fits:
        rows = _rows(x_fit, x)  # KeyError: a row that is not a training row
        centres = bovw.cluster_centers_
        key = (bovw.family, rows)
        if key in vocab:  # the same rows and seed give the same vocabulary
            np.testing.assert_array_equal(vocab[key], centres)
        vocab[key] = centres
    # never fitted on a validation row (they are not training rows at all)
    n = len(STATISTICS_NAMES)
    val = {row.tobytes() for row in trained["x_val"][:, :n]}
    assert not any(row.tobytes() in val for _, xf in fits for row in xf[:, :n])
    # the selection folds (the ones train_model searches on) each fitted their own
    folds = est.grouped_folds(trained["y"], trained["patients"], n_splits=3, seed=0)
    everything = frozenset(range(len(x)))
    for family in ("orb", "sift"):
        sets = {rows for fam, rows in vocab if fam == family}
        for tr, _ in folds:
            assert frozenset(tr.tolist()) in sets, f"{family}: a selection fold fitted none"
        assert everything in sets  # the final refit on all the training rows
        assert len(sets) >= len(folds) + 1 + 2  # + the nested CV's outer folds
        centres = [vocab[(family, s)] for s in sets]
        for i in range(len(centres)):
            for j in range(i):
                assert not np.allclose(centres[i], centres[j]), "two folds, one vocabulary"
        # each is scikit-learn's k-means of exactly that fold's training descriptors
        for tr, _ in folds:
            np.testing.assert_allclose(vocab[(family, frozenset(tr.tolist()))],
                                       _reference_centres(x[tr], names, family))


def test_model_file_holds_the_vocabulary(trained: dict) -> None:
    store, res, x, names = trained["store"], trained["res"], trained["x"], trained["names"]
    model, meta = reg.load_model(store, "kp", res["version"])
    pipe = model.estimator
    steps = dict(pipe.steps)
    assert list(steps)[:2] == ["bovw_orb", "bovw_sift"]
    assert meta["feature_names"] == names  # the table's columns: no word is a table constant
    assert not any("_word" in n for n in names)
    blob = reg.read_model_file(store, "kp", res["version"], "pipeline.skops")
    assert "medpipe.features.visualwords.BagOfVisualWords" in sio.get_untrusted_types(data=blob)
    everything = frozenset(range(len(x)))
    final = {b.family: b for b, xf in trained["fits"] if _rows(xf, x) == everything}
    for family in ("orb", "sift"):
        loaded = steps[f"bovw_{family}"]
        np.testing.assert_allclose(loaded.cluster_centers_,
                                   _reference_centres(x, names, family))
        assert loaded.cluster_centers_.shape[0] == kp.N_WORDS
        assert loaded.get_params() == final[family].get_params()
    # the loaded pipeline transforms as the in-memory one did, and scores the store
    xt_loaded = steps["bovw_sift"].transform(steps["bovw_orb"].transform(x))
    xt_fit = final["sift"].transform(final["orb"].transform(x))
    np.testing.assert_array_equal(xt_loaded, xt_fit)
    scored = score_model(store, model="kp")
    assert scored["scored"] == scored["total"] == 72
    assert np.isfinite(est.positive_proba(model, trained["x_val"])).all()
    assert Path(store, "models", "kp", res["version"], "pipeline.skops").is_file()
