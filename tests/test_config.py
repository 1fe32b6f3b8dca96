"""medpipe.config: the frozen stage-config base, and stage configs read from YAML."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from medpipe.config import FrozenConfig, load_config
from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import features_group
from medpipe.preprocess import GaussianStep, PreprocessConfig
from medpipe.sample import MEDMNIST_FEATURE_FAMILIES

CONFIGS = [FeatureConfig, PreprocessConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_bad_yaml_names_the_file(tmp_path: Path, cls: type) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("no_such_option: 3\n")
    with pytest.raises(ConfigError, match="cfg.yaml") as info:
        load_config(cls, path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).count(str(path)) == 1
    assert "no_such_option" in str(info.value)


def test_missing_file_and_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml") as info:
        load_config(FeatureConfig, tmp_path / "missing.yaml")
    assert str(info.value).count("missing.yaml") == 1
    assert load_config(FeatureConfig, None) == FeatureConfig()
    assert load_config(PreprocessConfig, None) == PreprocessConfig.default()


@pytest.mark.parametrize("cls", CONFIGS)
def test_one_base_frozen_and_strict(cls: type[FrozenConfig]) -> None:
    cfg = cls.default()
    assert isinstance(cfg, FrozenConfig)
    hash(cfg)  # frozen models are hashable
    with pytest.raises(ValidationError):  # assignment, not validation: pydantic's error
        cfg.__setattr__(next(iter(cls.model_fields)), None)
    for bad in ({"no_such_option": 1}, ["not", "a", "mapping"]):
        with pytest.raises(ConfigError):
            cls.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no_such_option"):
        cls.model_validate({"no_such_option": 1})
    with pytest.raises(ConfigError, match="no_such_option"):
        cls.model_validate_json('{"no_such_option": 1}')


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(),
        FeatureConfig(families=("firstorder", "glcm"), bin_width=25.0, min_value=-100.0),
        PreprocessConfig.default(),
        PreprocessConfig(steps=(GaussianStep(sigma_mm=(2.0, 1.0, 1.0)),)),
    ],
)
def test_one_canonical_hash_and_yaml_round_trip(cfg: FrozenConfig, tmp_path: Path) -> None:
    data = cfg.model_dump(mode="json")
    if isinstance(cfg, FeatureConfig):  # fields added later, at their defaults, rename nothing
        dflt = FeatureConfig().model_dump(mode="json")
        data = {k: v for k, v in data.items() if k in cfg.NAMING_FIELDS or v != dflt[k]}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert cfg.canonical_json() == canonical
    assert cfg.hash() == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    back = type(cfg).from_yaml(cfg.to_yaml(tmp_path / "cfg.yaml"))
    assert back == cfg and back.hash() == cfg.hash()
    assert type(cfg).from_dict(cfg.model_dump()) == cfg


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"bin_count": 0}, "bin_count"),
        ({"bin_width": -1.0}, "bin_width"),
        ({"min_value": float("nan")}, "min_value"),
        ({"families": ["firstorder", "firstorder"]}, "families"),
        ({"families": ["no_such_family"]}, "families"),
        ({"crop_margin": -1}, "crop_margin"),
        ({"lbp_radius": "wide"}, "lbp_radius"),
    ],
)
def test_feature_config_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}: ") as info:
        FeatureConfig(**data)
    assert isinstance(info.value, ValueError)


def test_preprocess_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"steps\.0\.gaussian\.sigma_mm[.: ]"):
        PreprocessConfig.from_dict({"steps": [{"kind": "gaussian", "sigma_mm": -1}]})


#: Group names before the shared config base, computed by the old code (commit 1f4bc52,
#: ``sha256(model_dump_json())[:12]``), and the canonical 16-digit names since.
RENAMED = [
    (FeatureConfig(), "images", "features/64ff1141c369", "features/45c6241bef12d8fb"),
    (
        FeatureConfig(families=MEDMNIST_FEATURE_FAMILIES),
        "images",
        "features/e24eac768e9c",
        None,
    ),
    (
        FeatureConfig(families=("firstorder", "glcm")),
        "preprocessed/c204118bd890ae9e",
        "features/736eb713be2b-c204118bd890ae9e",
        None,
    ),
    (
        FeatureConfig(families=("firstorder", "glcm", "morphology"), bin_width=25.0),
        "images",
        "features/f5cfc6f6f01e",
        None,
    ),
    (
        FeatureConfig(families=("pixels", "histogram", "firstorder"), pixels_size=14),
        "images",
        "features/100c8f7345a8",
        None,
    ),
    (
        FeatureConfig(families=("firstorder", "histogram", "glcm", "texture", "pixels", "hog")),
        "images",
        "features/51d9e98ce8e6",
        None,
    ),
    (
        FeatureConfig(
            families=("firstorder", "histogram", "glcm", "glrlm", "morphology", "texture",
                      "colour", "regionprops", "pixels", "hog"),
            bin_width=10.0, min_value=-5.0, glcm_aggregations=("2_5d_merged",),
            glcm_distance=2, lbp_points=16, lbp_radius=2.0, hsv_bins=4, crop_margin=0,
            pixels_size=8,
        ),
        "images",
        "features/c2e9b1e5e8a5",
        None,
    ),
]


@pytest.mark.parametrize(("cfg", "source", "old", "new"), RENAMED)
def test_feature_group_rename_old_to_new(
    cfg: FeatureConfig, source: str, old: str, new: str | None
) -> None:
    """``features/<12-digit legacy hash>[-<pre>]`` → ``features/<16-digit hash>[-<pre>]``."""
    legacy = f"features/{cfg.legacy_hash()}"
    suffix = "" if source == "images" else "-" + source.rsplit("/", 1)[-1]
    assert legacy + suffix == old
    renamed = features_group(cfg, source=source)
    assert renamed == f"features/{cfg.hash()}{suffix}" and renamed != old
    if new is not None:
        assert renamed == new
