"""Store layout: the group names every module uses, and no hand-built paths elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from medpipe import catalog, ingest, report
from medpipe.features import FeatureConfig
from medpipe.features import dataset as fdata
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models import train
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess import apply as papply
from medpipe.store import layout

PKG = Path(layout.__file__).resolve().parents[1]


def test_constants_match_the_modules_that_use_them() -> None:
    assert layout.IMAGES == ingest.IMAGES == "images"
    assert layout.PREPROCESSED == papply.PREPROCESSED == "preprocessed"
    assert layout.FEATURES == fdata.FEATURES == "features"
    assert layout.MODELS == reg.MODELS == "models"
    assert layout.SCORES == train.SCORES == "scores"
    assert layout.LABELS == lab.LABELS == "labels"
    assert layout.REPORTS == report.REPORTS == "reports"
    assert layout.CATALOG == catalog._CATALOG == "catalog"
    assert layout.LOCKS == "locks"


def test_helpers_build_the_documented_paths() -> None:
    assert layout.image("k1") == "images/k1"
    assert layout.image_labels("images/k1") == "images/k1/labels"
    assert layout.image_label("images/k1", "gtv") == "images/k1/labels/gtv"
    assert layout.preprocessed("abc") == "preprocessed/abc"
    assert layout.preprocessed_image("abc", "k1") == "preprocessed/abc/k1"
    assert layout.source_image("preprocessed/abc", "k1") == "preprocessed/abc/k1"
    assert layout.features("f0") == "features/f0"
    assert layout.features("f0", source="preprocessed/abc") == "features/f0-abc"
    assert layout.model("m", "v2") == "models/m/v2" and layout.model("m") == "models/m"
    assert layout.scores("m", "v2") == "scores/m/v2"
    assert layout.label_table("0123") == "labels/0123.parquet"
    assert layout.catalog_part("part-x.parquet") == "catalog/part-x.parquet"
    assert layout.report("r1") == "reports/r1"
    assert layout.report_page("r1") == "reports/r1/index.html"
    assert layout.lock("write") == "locks/write.lock"
    assert layout.key_of("preprocessed/abc/k1/") == "k1"
    assert layout.preprocessing_hash("preprocessed/abc") == "abc"
    assert layout.preprocessing_hash("images") is None


def test_stage_helpers_use_the_layout() -> None:
    fcfg, pcfg = FeatureConfig(), PreprocessConfig.default()
    pre = papply.preprocessed_group(pcfg)
    assert pre == f"preprocessed/{pcfg.hash()}"
    assert fdata.features_group(fcfg) == f"features/{fcfg.hash()}"
    assert fdata.features_group(fcfg, source=pre) == f"features/{fcfg.hash()}-{pcfg.hash()}"
    assert train.scores_group("m", "v1") == "scores/m/v1"
    assert reg.model_path("m", "v1") == "models/m/v1"
    with pytest.raises(ValueError):
        train.scores_group("../x", "v1")


_OWNED = [
    "catalog.py",
    "features/dataset.py",
    "preprocess/apply.py",
    "models/train.py",
    "models/evaluation.py",
    "models/scoring.py",
    "models/common.py",
    "models/labels.py",
    "models/registry.py",
    *(f"store/{p.name}" for p in sorted((PKG / "store").glob("*.py")) if p.name != "layout.py"),
]
_GROUPS = tuple(
    f"{g}/"
    for g in (
        layout.IMAGES, layout.PREPROCESSED, layout.FEATURES, layout.MODELS, layout.SCORES,
        layout.LABELS, layout.CATALOG, layout.REPORTS, layout.LOCKS,
    )
)


def _literals(tree: ast.AST) -> list[str]:
    """String constants and f-string pieces that are not docstrings."""
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docs.add(id(body[0].value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append(node.value)
    return out


@pytest.mark.parametrize("rel", _OWNED)
def test_no_hand_built_group_paths(rel: str) -> None:
    tree = ast.parse((PKG / rel).read_text())
    bad = [s for s in _literals(tree) if s.startswith(_GROUPS) or s in _GROUPS]
    assert not bad, f"{rel} spells store paths by hand: {bad}"
