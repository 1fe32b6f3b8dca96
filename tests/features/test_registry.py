"""The feature-family registry: built-in families, a toy family registered from a test,
and that toy family computed by the features flow on a real LocalCluster.

The toy family is registered by a fixture, never at import: a worker process that
imports this module (to unpickle the toy's functions, which cloudpickle ships by
reference) does not register it, so the flow can only compute it because the config
carries the family's record in the task graph.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import xarray as xr
from pydicom.data import get_testdata_file

from medpipe import ingest
from medpipe import store as _store
from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig, compute_features, extract, registry
from medpipe.features.registry import Family, register_family, unregister_family
from medpipe.features.sample import Sample

BUILTIN = (
    "colour",
    "firstorder",
    "glcm",
    "glrlm",
    "histogram",
    "hog",
    "morphology",
    "pixels",
    "regionprops",
    "texture",
)

TOY = "toy"


def toy_names(config: FeatureConfig) -> list[str]:
    """Feature names of the toy family (they follow the config, like a real family)."""
    return [f"toy_voxels_above_{config.bin_count}", "toy_registered_here", "toy_pid"]


def toy_compute(sample: Sample) -> dict[str, float]:
    """ROI voxels above ``bin_count``, whether this process's registry knows the toy,
    and the process id: the last two show where the feature was computed."""
    n = int(np.count_nonzero(sample.grey[sample.mask] > sample.config.bin_count))
    return {
        f"toy_voxels_above_{sample.config.bin_count}": float(n),
        "toy_registered_here": float(TOY in registry.family_names()),
        "toy_pid": float(os.getpid()),
    }


@pytest.fixture
def toy_family() -> Iterator[Family]:
    family = register_family(Family(TOY, toy_names, toy_compute))
    try:
        yield family
    finally:
        unregister_family(TOY)


def test_builtin_families_are_registered() -> None:
    from medpipe.features.extract import FAMILIES

    assert set(BUILTIN) <= set(registry.family_names())
    assert FAMILIES == registry.family_names()
    assert [f.name for f in registry.families()] == list(registry.family_names())
    for name in BUILTIN:
        fam = registry.get_family(name)
        assert fam.name == name
        cfg = FeatureConfig(families=(name,))
        assert cfg.family_records() == (fam,)
        assert cfg.feature_names() == list(fam.feature_names(cfg))


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="families: unknown feature family") as info:
        FeatureConfig(families=("firstorder", "no_such_family"))
    for name in BUILTIN:
        assert name in str(info.value)
    with pytest.raises(ConfigError, match="no_such_family"):
        registry.get_family("no_such_family")


def test_register_rules(toy_family: Family) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_family(Family(TOY, toy_names, lambda s: {}))
    register_family(toy_family)  # the same record again is a no-op
    with pytest.raises(ConfigError, match="lower case"):
        register_family(Family("Bad Name", toy_names, toy_compute))
    assert TOY in registry.family_names()
    unregister_family(TOY)
    assert TOY not in registry.family_names()
    with pytest.raises(ConfigError, match="unknown feature family"):
        FeatureConfig(families=(TOY,))
    register_family(toy_family)


def test_toy_family_computes_in_memory(toy_family: Family) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(40.0, 20.0, size=(3, 17, 19))
    mask = np.zeros(image.shape, bool)
    mask[1:3, 4:12, 5:15] = True
    cfg = FeatureConfig(families=("firstorder", TOY), bin_count=50)
    names = cfg.feature_names()
    assert names[-3:] == ["toy_voxels_above_50", "toy_registered_here", "toy_pid"]
    feats = compute_features(image, mask, spacing=(2.0, 1.0, 1.0), config=cfg)
    assert list(feats) == names
    assert feats["toy_voxels_above_50"] == np.count_nonzero(image[mask] > 50)
    assert feats["toy_registered_here"] == 1.0
    plain = compute_features(
        image, mask, spacing=(2.0, 1.0, 1.0), config=FeatureConfig(families=("firstorder",))
    )
    for name, value in plain.items():  # the built-in family is untouched by the toy
        assert feats[name] == value
    empty = compute_features(image, np.zeros_like(mask), spacing=(1, 1, 1), config=cfg)
    assert np.isnan(empty["toy_voxels_above_50"])  # needs_roi: skipped on an empty ROI


def test_toy_family_in_the_lazy_table(toy_family: Family) -> None:
    image = xr.DataArray(
        np.arange(2 * 12 * 10, dtype=np.float64).reshape(2, 12, 10),
        dims=("z", "y", "x"),
        attrs={"spacing": (1.0, 1.0, 1.0)},
    ).chunk({"z": 1, "y": 5, "x": 5})
    mask = np.zeros(image.shape, bool)
    mask[:, 2:9, 3:8] = True
    cfg = FeatureConfig(families=(TOY, "histogram"), bin_count=100)
    ds = extract([("s", image, {"roi": xr.DataArray(mask, dims=image.dims)})], config=cfg)
    got = ds.features.compute(scheduler="sync").values[0]
    ref = compute_features(image.values, mask, spacing=(1.0, 1.0, 1.0), config=cfg)
    np.testing.assert_array_equal(got, [ref[n] for n in cfg.feature_names()])
    assert list(ds.feature.values) == cfg.feature_names()


# ------------------------------------------------------------- the features flow


@pytest.fixture(scope="module")
def prefect_api(prefect_test_api: str) -> Iterator[None]:
    """The session's temporary Prefect API (SQLite) for the flow test of this module."""
    yield


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store ingested from two of pydicom's real DICOM files (CT and MR)."""
    root = tmp_path_factory.mktemp("registry")
    archive = root / "archive"
    archive.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), archive / name)
    out = str(root / "store.zarr")
    ingest.ingest_archive(str(archive), out, secret=b"test-secret")
    return out


@pytest.mark.timeout(600)
def test_features_flow_computes_a_family_registered_here(
    prefect_api: None, small_store: str, toy_family: Family
) -> None:
    from flows.features import FeatureParams, features_flow

    cfg = FeatureConfig(families=("firstorder", TOY), bin_count=100)
    result = features_flow(FeatureParams(store=small_store, config=cfg, cluster="local:2"))
    assert result.computed == 2
    table = xr.open_zarr(f"{small_store}/{result.group}", consolidated=False).load()
    assert list(table["feature"].values) == cfg.feature_names()
    names = list(table["feature"].values)
    for sample in table["sample"].values:
        key = str(table["series"].sel(sample=sample).values)
        image = _store.open_image(small_store, _store.layout.image(key))
        ref = compute_features(
            image.values, None, spacing=image.attrs["spacing"], config=cfg
        )
        got = dict(zip(names, table["features"].sel(sample=sample).values, strict=True))
        assert got["toy_voxels_above_100"] == ref["toy_voxels_above_100"] > 0
        for name in names:
            if name.startswith("firstorder_"):
                np.testing.assert_allclose(got[name], ref[name], rtol=1e-12)
        # computed in a worker process, whose registry never heard of the toy family:
        # its compute function travelled in the task graph
        assert got["toy_registered_here"] == 0.0
        assert got["toy_pid"] != os.getpid()
