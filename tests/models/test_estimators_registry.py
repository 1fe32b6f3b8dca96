"""Grid search against scikit-learn's, grouped folds, skops registry and tampering."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from medpipe.errors import ModelError, UntrustedModelError
from medpipe.models import estimators as est
from medpipe.models import registry as reg


def _data(n: int = 120, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x[:, 0] + 0.8 * rng.normal(size=n) > 0).astype(int)
    groups = np.arange(n) // 3
    return x, y, groups


def test_grouped_folds_never_split_a_group() -> None:
    x, y, groups = _data()
    folds = est.grouped_folds(y, groups, n_splits=5)
    assert len(folds) == 5
    seen = np.zeros(len(y), int)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all()
    with pytest.raises(ModelError):
        est.grouped_folds(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))


@pytest.mark.parametrize("kind", ["svm", "rf"])
def test_search_equals_sklearn_gridsearch(kind: str) -> None:
    """dask-ml's GridSearchCV on the same folds gives scikit-learn's fold scores."""
    x, y, groups = _data()
    folds = est.grouped_folds(y, groups, n_splits=4)
    grid = est.param_grid(kind)
    if kind == "rf":
        grid = {k: v[:1] if k.endswith("leaf") else v for k, v in grid.items()}
    got = est.search(kind, x, y, groups, folds=folds)
    ref = SkGridSearchCV(est.make_pipeline(kind), grid, cv=folds, scoring=est.auc_scorer)
    ref.fit(x, y)
    ref_scores = {json.dumps(p, sort_keys=True, default=str): s for p, s in
                  zip(ref.cv_results_["params"], ref.cv_results_["mean_test_score"],
                      strict=True)}
    mine = {json.dumps(c["params"], sort_keys=True, default=str): c["mean_auc"]
            for c in got.candidates}
    assert set(ref_scores) <= set(mine)
    for key, score in ref_scores.items():
        assert mine[key] == pytest.approx(score, abs=1e-9)
    assert got.best_score == pytest.approx(max(mine.values()))


def test_training_matrix_is_sent_once_without_a_large_graph_warning() -> None:
    """12 MB of features on a cluster: one graph key each, no "Sending large graph"."""
    import warnings

    from distributed import Client, LocalCluster

    x, y, groups = _data(1500, 1000)
    folds = est.grouped_folds(y, groups, n_splits=3)
    pipe = est.make_pipeline("svm").set_params(clf__estimator__C=1e-2)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        oof = est.out_of_fold(pipe, x, y, folds=folds)
    assert not [w for w in caught if "large graph" in str(w.message)]
    assert np.isfinite(oof).all()
    # the same out-of-fold probabilities as fitting each fold here
    tr, te = folds[0]
    ref = est.positive_proba(clone(pipe).fit(x[tr], y[tr]), x[te])
    np.testing.assert_allclose(oof[te], ref, rtol=1e-5)  # float noise across threads


def test_logreg_and_incremental_svm_fit_and_predict() -> None:
    x, y, groups = _data(200)
    folds = est.grouped_folds(y, groups, n_splits=3)
    for kind, large in (("logreg", False), ("svm", True)):
        res = est.search(kind, x, y, groups, folds=folds, large=large)
        assert res.best_score > 0.7  # the signal is strong: both must find it
        if large:  # scored from its out-of-fold probabilities, kept for train_model
            assert res.best_score == pytest.approx(
                np.mean([roc_auc_score(y[te], res.oof[te]) for _, te in folds]))
        model = est.fit_final(res, x, y)
        p = est.positive_proba(model, x)
        assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))
        import dask.array as da

        lazy = est.positive_proba(model, da.from_array(x, chunks=(50, -1)))
        np.testing.assert_allclose(lazy.compute(), p)


def _svm() -> tuple[np.ndarray, object]:
    """Data and a fitted, searched SVM pipeline."""
    x, y, groups = _data()
    folds = est.grouped_folds(y, groups, n_splits=3)
    return x, est.fit_final(est.search("svm", x, y, groups, folds=folds), x, y)


def test_registry_round_trip_and_versions(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    x, model = _svm()
    v1 = reg.save_model(store, "m", model, {"feature_names": ["a"]})
    v2 = reg.save_model(store, "m", model, {"feature_names": ["a"]})
    assert (v1, v2) == ("v1", "v2")
    loaded, meta = reg.load_model(store, "m")
    assert meta["version"] == "v2"
    np.testing.assert_array_equal(est.positive_proba(loaded, x), est.positive_proba(model, x))
    assert [m["version"] for m in reg.list_models(store)] == ["v1", "v2"]
    assert reg.parse_model_ref("m:v1") == ("m", "v1")
    with pytest.raises(ModelError):
        reg.load_model(store, "m", "v9")
    with pytest.raises(ModelError):
        reg.parse_model_ref("../etc")


def test_soft_vote_is_the_mean_of_its_tuned_members(tmp_path: Path) -> None:
    x, y, groups = _data(150)
    folds = est.grouped_folds(y, groups, n_splits=3)
    results = [est.search(k, x, y, groups, folds=folds) for k in ("logreg", "rf")]
    ens = est.ensemble_result(results, x, y, folds=folds)
    # scored on the same folds as the members: the mean fold AUC of the mean OOF proba
    oofs = [est.out_of_fold(r.pipeline(), x, y, folds=folds) for r in results]
    mean = np.mean(oofs, axis=0)
    np.testing.assert_allclose(ens.oof, mean)
    assert ens.best_score == pytest.approx(
        np.mean([roc_auc_score(y[te], mean[te]) for _, te in folds]))
    assert ens.best_params == {r.kind: r.best_params for r in results}

    model = est.fit_final(ens, x, y)
    singles = [est.positive_proba(est.fit_final(r, x, y), x) for r in results]
    np.testing.assert_allclose(est.positive_proba(model, x), np.mean(singles, axis=0))
    # the registry saves and loads it with the trusted types only
    store = str(tmp_path / "s.zarr")
    reg.save_model(store, "vote", model, {"feature_names": ["a"]})
    loaded, _ = reg.load_model(store, "vote")
    np.testing.assert_allclose(est.positive_proba(loaded, x), est.positive_proba(model, x))
    with pytest.raises(ModelError, match="two"):
        est.ensemble_result(results[:1], x, y, folds=folds)


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    x, model = _svm()
    version = reg.save_model(store, "m", model, {"feature_names": ["a"]})
    path = tmp_path / "s.zarr" / reg.model_path("m", version) / "pipeline.skops"

    meta_path = path.with_name("model.json")

    def rewrite(blob: bytes, *, with_checksum: bool) -> None:
        """Replace the model file; an attacker who can also rewrite model.json fixes its sha."""
        path.write_bytes(blob)
        if with_checksum:
            meta = json.loads(meta_path.read_text())
            meta["sha256"] = hashlib.sha256(blob).hexdigest()
            meta_path.write_text(json.dumps(meta))

    # 0. any change to the file alone: the SHA-256 in model.json no longer matches
    evil = Pipeline([("run", FunctionTransformer(os.system))])
    rewrite(sio.dumps(evil), with_checksum=False)
    with pytest.raises(ModelError, match="SHA-256") as info:
        reg.load_model(store, "m", version)
    assert not isinstance(info.value, UntrustedModelError)

    # 1. the file swapped for one that would call os.system on load/predict (checksum too)
    rewrite(sio.dumps(evil), with_checksum=True)
    with pytest.raises(UntrustedModelError, match="os.system|posix.system"):
        reg.load_model(store, "m", version)

    # 2. the original file edited in place: a class renamed to an arbitrary importable type
    data = sio.dumps(model)
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            blob = src.read(item.filename)
            if item.filename == "schema.json":
                blob = blob.replace(b'"sklearn.svm._classes"', b'"subprocess"').replace(
                    b'"LinearSVC"', b'"Popen"')
            dst.writestr(item, blob)
    rewrite(buf.getvalue(), with_checksum=True)
    with pytest.raises(UntrustedModelError, match="subprocess.Popen"):
        reg.load_model(store, "m", version)
    # a caller may catch it as a ValueError too
    assert issubclass(UntrustedModelError, ValueError)


def test_split_keeps_every_public_name_and_the_trusted_type_paths() -> None:
    from medpipe.models import search as srch

    for name in est.__all__:  # every public name still importable from estimators
        assert getattr(est, name) is not None, name
    for name in srch.__all__:  # the search helpers are the same objects, re-exported
        assert getattr(est, name) is getattr(srch, name), name
    with pytest.raises(AttributeError):
        est.no_such_name  # noqa: B018
    # the types a saved pipeline contains keep the module path the trusted list names
    for cls in (est.StandardScaler, est.SoftVote):
        assert f"{cls.__module__}.{cls.__qualname__}" in reg.TRUSTED_TYPES
        assert cls.__module__ == "medpipe.models.estimators"
