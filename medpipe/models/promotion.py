"""Which model version is current, and when a new one may replace it.

A new model becomes *current* only if its cross-validated AUC is not worse than the
lower bound of the current model's CV AUC confidence interval; each decision is recorded
in ``models/<name>/current.json``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from medpipe.features.dataset import open_features
from medpipe.models import registry as reg
from medpipe.models.train import open_scores, scores_group
from medpipe.store import store_root

__all__ = ["current_version", "promote", "labels_changed", "unscored_count"]

_CURRENT = "current.json"


def current_version(store: str, name: str) -> str | None:
    """The version the nightly run scores with (``None`` before the first model)."""
    fs, root = store_root(store)
    path = f"{root}/{reg.model_path(name, '')}".rstrip("/") + f"/{_CURRENT}"
    if not fs.exists(path):
        return None
    return json.loads(fs.cat_file(path))["version"]


def promote(store: str, name: str, candidate: dict[str, Any]) -> dict[str, Any]:
    """Make ``candidate`` current unless its CV AUC is below the current CI lower bound.

    Returns
    -------
    dict
        The recorded decision (``promoted``, ``reason``, versions and AUCs).
    """
    fs, root = store_root(store)
    base = f"{root}/{reg.model_path(name, '')}".rstrip("/")
    path = f"{base}/{_CURRENT}"
    state = json.loads(fs.cat_file(path)) if fs.exists(path) else {"version": None, "decisions": []}
    new_auc = candidate["metrics"]["auc"]["value"]
    decision: dict[str, Any] = {
        "candidate": candidate["version"],
        "candidate_cv_auc": new_auc,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if state["version"] is None:
        decision.update(promoted=True, reason="no current model")
    else:
        cur = reg.read_model_json(store, name, state["version"])["metrics"]["cv"]["auc"]
        decision.update(
            current=state["version"], current_cv_auc=cur["value"], current_ci_low=cur["ci_low"]
        )
        ok = new_auc >= cur["ci_low"]
        decision.update(
            promoted=ok,
            reason=(
                f"CV AUC {new_auc:.3f} {'>=' if ok else '<'} current CI lower bound "
                f"{cur['ci_low']:.3f}"
            ),
        )
    if decision["promoted"]:
        state["version"] = candidate["version"]
    state["decisions"] = [*state.get("decisions", []), decision]
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(path, json.dumps(state, indent=1).encode())
    return decision


def labels_changed(store: str, name: str, version: str | None, labels_path: str) -> bool:
    """True when ``version`` was trained on other labels than ``labels_path`` (or is None)."""
    if version is None:
        return True
    return reg.read_model_json(store, name, version)["labels"]["path"] != labels_path


def unscored_count(store: str, name: str, version: str, features_group: str) -> int:
    """Samples of the feature table without a score from ``name:version`` (metadata only)."""
    fs, root = store_root(store)
    if not fs.exists(f"{root}/{features_group}/zarr.json"):
        return 0
    table = open_features(store, features_group)
    scores = open_scores(store, scores_group(name, version))
    done = 0 if scores is None else scores.sizes.get("sample", 0)
    return max(0, table.sizes["sample"] - done)
