"""Preprocess and feature flows on a real LocalCluster, over real ingested images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flows.features import FeatureParams, features_flow
from flows.preprocess import PreprocessParams, preprocess_flow
from medpipe import ingest, store
from medpipe.features import FeatureConfig, compute_features
from medpipe.preprocess import PreprocessConfig, run
from medpipe.sample import build_bundled_archive

SECRET = b"test-secret"


@pytest.fixture(scope="module")
def bundled_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("pf")
    archive = build_bundled_archive(root / "archive")
    out = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), out, secret=SECRET)
    return out


@pytest.mark.timeout(600)
def test_many_more_tasks_than_threads_do_not_deadlock(bundled_store: str) -> None:
    """One series per task, >= 4x as many tasks as worker threads, each running array work
    on the whole cluster from inside its task (prefect-dask's get_dask_client hangs here)."""
    cfg = PreprocessConfig.default()
    n_threads = 2
    result = preprocess_flow(
        PreprocessParams(store=bundled_store, config=cfg, cluster=f"local:{n_threads}", batch=1)
    )
    assert result.done >= 4 * n_threads
    group = result.group
    keys = [p.rsplit("/", 1)[-1] for p in store.list_groups(bundled_store, group)]
    assert list(result.keys) == sorted(keys)
    assert result.unsupported and all(result.unsupported.values())  # e.g. RGB: with a reason
    assert not set(result.unsupported) & set(keys)
    for key in keys[:3]:  # the written result equals the same lazy chain computed locally
        src = store.open_image(bundled_store, f"images/{key}")
        expected = run(src, cfg).data.compute(scheduler="synchronous")
        got = store.open_image(bundled_store, f"{group}/{key}").values
        np.testing.assert_array_equal(got, expected)
    again = preprocess_flow(PreprocessParams(store=bundled_store, config=cfg, cluster="local:1"))
    assert again.done == 0  # idempotent: complete outputs are not recomputed


def test_feature_table_flow(bundled_store: str) -> None:
    cfg = FeatureConfig(families=("firstorder", "histogram", "glcm"))
    result = features_flow(FeatureParams(store=bundled_store, config=cfg, cluster="local:2"))
    table = xr.open_zarr(f"{bundled_store}/{result.group}", consolidated=False)
    assert table["features"].dims == ("sample", "feature")
    assert list(table["feature"].values) == cfg.feature_names()
    ct = [
        s
        for s, m in zip(table["sample"].values, table["modality"].values, strict=True)
        if m == "CT"
    ]
    assert ct
    sample = ct[0]
    key = str(table["series"].sel(sample=sample).values)
    image = store.open_image(bundled_store, f"images/{key}")
    mask = np.ones(image.shape, dtype=bool)
    ref = compute_features(image.values, mask, spacing=image.attrs["spacing"], config=cfg)
    got = table["features"].sel(sample=sample).values
    np.testing.assert_allclose(
        got, [ref[n] for n in cfg.feature_names()], rtol=1e-10, equal_nan=True
    )


@pytest.mark.slow
def test_ibsi_features_one_sample_per_series_and_roi(shared_data: Path, tmp_path: Path) -> None:
    archive = shared_data / "dicom" / "ibsi_sts"
    out = str(tmp_path / "store.zarr")
    patients = sorted(p.name for p in archive.glob("STS_*"))[:3]
    sub = tmp_path / "archive"
    for p in patients:
        shutil.copytree(archive / p, sub / p)
    ingest.ingest_archive(str(sub), out, secret=SECRET)
    cfg = FeatureConfig(families=("firstorder", "glcm", "morphology"), bin_width=25.0)
    result = features_flow(FeatureParams(store=out, config=cfg, cluster="local:2"))
    table = xr.open_zarr(f"{out}/{result.group}", consolidated=False)
    assert table.sizes["sample"] == 3 * len(patients)  # CT, MR and PET, one GTV each
    assert all(str(r).startswith("GTV") for r in table["roi"].values)
    assert np.isfinite(table["features"].sel(feature="morph_volume").values).all()
