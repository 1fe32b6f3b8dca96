"""The nightly flow's model stage: retrain when asked or when labels change, then score.

A new model becomes *current* only if its cross-validated AUC is not worse than the lower
bound of the current model's CV AUC confidence interval; every decision is recorded in
``models/<name>/current.json``.  Scoring uses the current model on the samples that have
features and no score yet.  Everything is decided from metadata first, so a night with
nothing new starts no cluster.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flows._runner import load_secret
from flows.score import ScoreParams, score_flow
from flows.train import TrainParams, train_flow
from medpipe.errors import ModelError
from medpipe.features.dataset import open_features
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.metrics import METRICS, format_metric
from medpipe.models.train import open_scores, scores_group
from medpipe.store import store_root

__all__ = ["train_and_score", "current_version", "promote"]

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


def _labels_changed(store: str, name: str, version: str | None, labels_path: str) -> bool:
    if version is None:
        return True
    return reg.read_model_json(store, name, version)["labels"]["path"] != labels_path


def _unscored(store: str, name: str, version: str, features_group: str) -> int:
    fs, root = store_root(store)
    if not fs.exists(f"{root}/{features_group}/zarr.json"):
        return 0
    table = open_features(store, features_group)
    scores = open_scores(store, scores_group(name, version))
    done = 0 if scores is None else scores.sizes.get("sample", 0)
    return max(0, table.sizes["sample"] - done)


def train_and_score(
    *,
    store: str,
    model: str,
    labels: str | None,
    retrain: bool,
    features_group: str,
    cluster: Callable[[], str],
    demo_secret: bool = False,
) -> dict[str, Any]:
    """Retrain if needed, then score new samples with the current model.

    ``cluster()`` returns the scheduler address, starting the cluster on first use.

    Returns
    -------
    dict
        ``name``, ``version`` (current), ``decision`` (if trained), ``scored``, ``metrics``
        (formatted CV metrics of the current model) and ``roc_uri`` (its CV ROC as a PNG
        data URI) for the report.
    """
    out: dict[str, Any] = {
        "name": model,
        "version": current_version(store, model),
        "decision": None,
        "scored": 0,
        "metrics": None,
        "roc_uri": None,
    }
    if labels:
        table = lab.read_labels(labels, secret=load_secret(allow_demo=demo_secret))
        labels_path = lab.write_labels(store, table)
        if retrain or _labels_changed(store, model, out["version"], labels_path):
            trained = train_flow(
                TrainParams(
                    store=store,
                    model=model,
                    labels=labels,
                    features=features_group,
                    evaluate_split="val",
                    cluster=cluster(),
                    demo_secret=demo_secret,
                )
            )
            out["trained"] = {k: trained["train"][k] for k in ("version", "estimator", "cv_auc")}
            out["decision"] = promote(store, model, trained["train"])
            out["version"] = current_version(store, model)
    version = out["version"]
    if version is None:
        out["note"] = "no model registered yet (give --labels to train one)"
        return out
    try:
        meta = reg.read_model_json(store, model, version)
    except ModelError as err:
        out["note"] = str(err)
        return out
    if _unscored(store, model, version, features_group):
        result = score_flow(
            ScoreParams(
                store=store, model=f"{model}:{version}", features=features_group, cluster=cluster()
            )
        )
        out["scored"] = result["scored"]
    cv = meta["metrics"]["cv"]
    out["metrics"] = {k: format_metric(k, cv[k]) for k in METRICS if k in cv}
    png = reg.read_model_file(store, model, version, "roc_cv.png")
    out["roc_uri"] = "data:image/png;base64," + base64.b64encode(png).decode()
    return out
