"""check_compatible: a model's feature config against a table's, old 12-digit hashes too."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from medpipe.errors import ModelMismatchError
from medpipe.features import FeatureConfig
from medpipe.models.evaluation import check_compatible


def _table(cfg: FeatureConfig) -> xr.Dataset:
    return xr.Dataset(
        {"features": (("sample", "feature"), np.zeros((1, 2)))},
        coords={"feature": ["a", "b"], "sample": ["s"]},
        attrs={"config_hash": cfg.hash(), "config": cfg.model_dump_json()},
    )


def test_old_model_hash_matches_the_same_config() -> None:
    cfg = FeatureConfig()
    meta = {"name": "m", "version": "v1", "feature_names": ["a", "b"]}
    check_compatible({**meta, "feature_config_hash": cfg.hash()}, _table(cfg))
    check_compatible({**meta, "feature_config_hash": cfg.legacy_hash()}, _table(cfg))
    other = FeatureConfig(bin_count=16)
    assert len(other.legacy_hash()) == 12 and other.legacy_hash() != cfg.legacy_hash()
    with pytest.raises(ModelMismatchError, match="config"):
        check_compatible({**meta, "feature_config_hash": other.legacy_hash()}, _table(cfg))
    with pytest.raises(ModelMismatchError, match="config"):
        check_compatible({**meta, "feature_config_hash": other.hash()}, _table(cfg))
