"""Train and score flows on a real LocalCluster under the Prefect test server."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from flows.score import ScoreParams, score_flow
from flows.train import TrainParams, train_flow
from medpipe import ingest
from medpipe.features import FeatureConfig
from medpipe.features.dataset import feature_table, features_group, write_features
from medpipe.models import registry as reg
from medpipe.models.estimators import RF_TREES
from medpipe.models.train import open_scores
from medpipe.sample import build_medmnist_archive
from tests.models.conftest import SECRET, write_npz


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("trainflow")
    npz = write_npz(root / "tiny.npz", n_train=36, n_val=12)
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist")
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    cfg = FeatureConfig(families=("pixels", "histogram"), pixels_size=8)
    write_features(feature_table(store, config=cfg), store=store, path=features_group(cfg))
    return {"store": store, "archive": archive, "config": cfg}


@pytest.mark.timeout(600)
def test_train_then_score_flow(labelled_store: dict, flow_cluster: str) -> None:
    store = labelled_store["store"]
    # the smallest nested CV (2 outer folds, 2 selection folds): outer_folds reaches
    # train_model, as the artifact's title shows
    params = TrainParams(
        store=store, model="flowmodel", labels=str(labelled_store["archive"] / "labels.csv"),
        feature_config=labelled_store["config"], estimator="rf", n_splits=2, outer_folds=2,
        cluster=flow_cluster,
    )
    out = train_flow(params=params)
    assert out.estimator == "rf"
    assert out.evaluation.split == "val" and out.evaluation.n == 12
    assert reg.list_versions(store, "flowmodel") == [out.version]
    model, _ = reg.load_model(store, "flowmodel")  # the RF refitted by one cluster task
    assert len(model.estimator[-1].estimators_) == RF_TREES

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts()}
    assert {"flowmodel-cv-metrics", "flowmodel-cv-roc", "flowmodel-val-metrics",
            "flowmodel-val-roc"} <= set(arts)
    assert "(2 outer folds)" in arts["flowmodel-cv-metrics"].description
    val_roc = arts["flowmodel-val-roc"].data
    assert "data:image/png;base64,iVBOR" in val_roc and "reports/roc_val.png" in val_roc

    res = score_flow(params=ScoreParams(store=store, model="flowmodel", cluster=flow_cluster))
    assert res.scored == res.total == 48
    scores = open_scores(store, res.group).load()
    assert np.isfinite(scores["probability"].values).all()
    again = score_flow(
        params=ScoreParams(store=store, model="flowmodel:v1", cluster=flow_cluster))
    assert again.scored == 0


def test_params_are_a_form() -> None:
    """Pydantic parameters: Prefect renders them as a form from their JSON schema."""
    schema = TrainParams.model_json_schema()
    assert {"store", "model", "labels", "estimator", "feature_config"} <= set(
        schema["properties"])
    assert schema["properties"]["estimator"]["enum"] == ["svm", "logreg", "rf", "cnn", "all"]
    assert "model" in ScoreParams.model_json_schema()["properties"]
    from flows.features import FeatureParams
    from flows.ingest import IngestParams
    from flows.nightly import NightlyParams
    from flows.preprocess import PreprocessParams

    for cls, required in ((IngestParams, {"archive", "store"}),
                          (PreprocessParams, {"store"}), (FeatureParams, {"store"}),
                          (NightlyParams, {"archive", "store"})):
        schema = cls.model_json_schema()
        assert set(schema["required"]) == required, cls
        assert "cluster" in schema["properties"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nightly_model_stage_trains_promotes_and_scores(
    labelled_store: dict, flow_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels read and recorded once per retrain; the new model becomes current, scores."""
    import flows.nightly
    from flows.nightly import NightlyParams, nightly_flow
    from medpipe.models import labels as lab
    from medpipe.models import lifecycle

    store, archive = labelled_store["store"], labelled_store["archive"]
    reads: list[str] = []
    real = lab.read_labels
    monkeypatch.setattr(lab, "read_labels", lambda p, **kw: reads.append(str(p)) or real(p, **kw))
    # what is tested is the model stage's lifecycle, not the selection (the train tests
    # cover that): one estimator, 2 folds, no nested CV instead of all, 5 and 3
    monkeypatch.setattr(flows.nightly, "TrainParams", functools.partial(
        TrainParams, estimator="logreg", n_splits=2, outer_folds=0))
    params = NightlyParams(
        archive=str(archive), store=store, labels=str(archive / "labels.csv"),
        model="nightlymodel", features=labelled_store["config"], cluster=flow_cluster,
    )
    first = nightly_flow(params)
    assert reads == [str(archive / "labels.csv")]  # pseudonymised once for the retrain
    m = first.model
    assert m.trained is not None and m.decision["promoted"]
    assert m.trained.estimator == "logreg"  # the nightly trained through TrainParams
    assert m.version == m.trained.version == lifecycle.current_version(store, "nightlymodel")
    assert m.trained.evaluation is not None and m.trained.evaluation.split == "val"
    assert m.scored == 48 and m.metrics and m.roc_uri.startswith("data:image/png;base64,")
    meta = reg.read_model_json(store, "nightlymodel", m.version)
    assert meta["labels"]["source"] == "labels.csv"
    assert meta["features_group"] == first.features.group

    again = nightly_flow(params)  # same labels, nothing new: no training, nothing scored
    assert again.model.trained is None and again.model.scored == 0
    assert again.model.version == m.version
