"""Scores follow their inputs (issue 13, acceptance 4).

A real labelled archive (MedMNIST-style DICOM cut from pydicom's CT and MR) is ingested,
featured, trained on and scored on a ``LocalCluster``.  Then one of its files changes
(its pixels are inverted, its UIDs kept), the archive is re-ingested and the features
brought up to date: exactly that series is re-scored with the model's probability of its
new features, while every other score keeps its value and its bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
import xarray as xr

from medpipe import catalog, ingest
from medpipe.features import FeatureConfig
from medpipe.features.dataset import open_features, update_features
from medpipe.models import estimators as est
from medpipe.models import registry as reg
from medpipe.models.lifecycle import unscored_count
from medpipe.models.scoring import INPUT, open_scores, score_model, unscored_samples
from medpipe.models.train import train_model
from medpipe.sample import build_medmnist_archive
from medpipe.store import layout, tables

from .conftest import SECRET, write_npz

CONFIG = FeatureConfig(families=("pixels", "histogram", "firstorder"), pixels_size=14)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as c:
        yield c


@contextmanager
def on(cluster: object) -> Iterator[object]:
    """The cluster's client as the current Dask scheduler (scoring runs on it)."""
    from distributed import Client

    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, cluster: object) -> dict:
    """An archive ingested, featured, trained on and scored once (on the cluster)."""
    root = tmp_path_factory.mktemp("rescore")
    npz = write_npz(root / "tiny.npz", n_train=30, n_val=12, seed=3)
    archive = build_medmnist_archive(npz, root / "archive", name="breastmnist")
    store = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=SECRET)
    group = update_features(store, config=CONFIG)["group"]
    out = train_model(store, name="rs", features=group, labels=archive / "labels.csv",
                      secret=SECRET, estimator="logreg", n_splits=3, n_boot=10,
                      outer_folds=2)
    with on(cluster):
        first = score_model(store, model="rs")
    return {"archive": archive, "store": store, "group": group, "first": first,
            "version": out["version"]}


def _invert(path: Path) -> None:
    """Invert a file's pixels (same UIDs, same size), with a later mtime."""
    ds = pydicom.dcmread(path)
    ds.PixelData = (255 - ds.pixel_array.astype(np.uint8)).astype(np.uint8).tobytes()
    ds.save_as(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_reingested_series_is_rescored_and_no_other_score_moves(
    scored: dict, cluster: object
) -> None:
    store, archive, group = scored["store"], scored["archive"], scored["group"]
    sgroup = scored["first"]["group"]
    table = open_features(store, group)
    assert scored["first"]["scored"] == table.sizes["sample"] == 42
    before = open_scores(store, sgroup).load()
    # every row records the feature row's version it scored
    np.testing.assert_array_equal(tables.string_values(before[INPUT]),
                                  tables.string_values(table["version"].sel(
                                      sample=before["sample"].values)))
    assert score_model(store, model="rs")["scored"] == 0  # nothing changed: nothing scored

    changed = sorted((archive / "dicom" / "val").glob("*.dcm"))[3]
    _invert(changed)
    key = str(catalog.current(store).loc[changed.relative_to(archive).as_posix(), "series"])
    with on(cluster) as client:
        summary = ingest.ingest_archive(str(archive), store, secret=SECRET, client=client)
    assert summary.changed == 1 and summary.series_ingested == 1
    feats = update_features(store, config=CONFIG)
    assert feats["keys"] == [key]

    # the plan sees the one changed sample before anything is scored
    table = open_features(store, group)
    assert unscored_count(store, "rs", scored["version"], group) == 1
    todo = unscored_samples(open_scores(store, sgroup), table)
    assert [str(table["series"].values[i]) for i in todo] == [key]

    with on(cluster):
        res = score_model(store, model="rs")
    assert (res["scored"], res["rescored"], res["total"]) == (1, 1, 42)
    after = open_scores(store, sgroup).load()
    assert sorted(tables.string_values(after["sample"])) == sorted(
        tables.string_values(before["sample"]))
    series = tables.string_values(after["series"])
    mine = np.flatnonzero(series == key)
    assert len(mine) == 1
    sample = str(after["sample"].values[mine[0]])
    old_p = float(before["probability"].sel(sample=sample))
    new_p = float(after["probability"].sel(sample=sample))
    assert new_p != old_p
    # the new score is the model's probability of the new feature row
    model, meta = reg.load_model(store, "rs")
    x = table["features"].sel(sample=[sample], feature=meta["feature_names"]).values
    np.testing.assert_allclose(new_p, est.positive_proba(model, x)[0], rtol=1e-10)
    assert str(after[INPUT].sel(sample=sample).values) == str(
        table["version"].sel(sample=sample).values)
    assert str(after[INPUT].sel(sample=sample).values) != str(
        before[INPUT].sel(sample=sample).values)

    # every other score: the same value, bit for bit, and the same recorded input
    others = [str(s) for s in before["sample"].values if str(s) != sample]
    b, a = before.sel(sample=others), after.sel(sample=others)
    assert a["probability"].values.tobytes() == b["probability"].values.tobytes()
    assert a["predicted"].values.tobytes() == b["predicted"].values.tobytes()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert score_model(store, model="rs")["scored"] == 0
    assert unscored_count(store, "rs", scored["version"], group) == 0


def test_a_score_table_without_inputs_is_rescored_once(scored: dict, tmp_path: Path) -> None:
    """Stores scored before inputs were recorded: every sample is scored again, once."""
    import shutil

    # a store of that time had no outputs index either
    store = str(tmp_path / "legacy.zarr")
    shutil.copytree(scored["store"], store, ignore=shutil.ignore_patterns(layout.OUTPUTS))
    sgroup = scored["first"]["group"]
    current = open_scores(store, sgroup).load()
    legacy = current.drop_vars(INPUT)
    # one row of a sample that is no longer in the feature table: kept as it is
    ghost = legacy.isel(sample=[0]).assign_coords(sample=["gone/roi"], series=("sample", ["gone"]))
    tables.write_table(xr.concat([legacy, ghost], dim="sample"), store=store, path=sgroup)
    assert unscored_count(store, "rs", scored["version"], scored["group"]) == 42
    res = score_model(store, model="rs")
    assert (res["scored"], res["rescored"], res["total"]) == (42, 42, 43)
    again = open_scores(store, sgroup).load()
    assert str(again[INPUT].sel(sample="gone/roi").values) == ""
    np.testing.assert_allclose(again["probability"].sel(sample=current["sample"].values),
                               current["probability"], rtol=1e-12)
    assert score_model(store, model="rs")["scored"] == 0
