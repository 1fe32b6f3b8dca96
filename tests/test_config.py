"""medpipe.config: stage configs read from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from medpipe.config import load_config
from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig
from medpipe.preprocess import PreprocessConfig


@pytest.mark.parametrize("cls", [FeatureConfig, PreprocessConfig])
def test_bad_yaml_names_the_file(tmp_path: Path, cls: type) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("no_such_option: 3\n")
    with pytest.raises(ConfigError, match="cfg.yaml") as info:
        load_config(cls, path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).count(str(path)) == 1


def test_missing_file_and_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(FeatureConfig, tmp_path / "missing.yaml")
    assert load_config(FeatureConfig, None) == FeatureConfig()
    assert load_config(PreprocessConfig, None) == PreprocessConfig.default()
