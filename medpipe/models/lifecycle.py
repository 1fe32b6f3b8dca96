"""A model's life in a store: when to retrain, when a new version becomes current, what
to score.  The nightly flow asks these questions and runs the train and score flows
on the answers; nothing here needs Prefect.

Rules
-----
- **Labels** are read and pseudonymised once per run (:func:`prepare_labels`) and the
  table is recorded in the store (``labels/<hash>.parquet``); training reads it back.
- **Retrain** when asked, or when the current version was trained on another label
  table than the one given (:func:`needs_training`).
- **Promote**: a new model becomes *current* only if its cross-validated AUC is not
  below the lower bound of the current model's CV AUC confidence interval
  (:func:`promotion_decision`); every decision is recorded in
  ``models/<name>/current.json`` (:func:`promote`).
- **Score** with the current version the samples of the feature table it has not
  scored yet (:func:`plan_scoring`), decided from metadata, so a night with nothing
  new starts no cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medpipe.errors import ModelError
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.metrics import format_metric, metric_keys
from medpipe.models.scoring import count_unscored
from medpipe.models.train import scores_group
from medpipe.results import ModelStageResult, TrainResult
from medpipe.store import store_root

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NO_MODEL_NOTE",
    "ScoringPlan",
    "current_version",
    "label_source_name",
    "labels_changed",
    "labels_path",
    "model_stage_result",
    "needs_training",
    "plan_scoring",
    "prepare_labels",
    "promote",
    "promotion_decision",
    "unscored_count",
]

_CURRENT = "current.json"

#: The note of a model stage that has no model to score with.
NO_MODEL_NOTE = "no model registered yet (give --labels to train one)"


def _current_path(store: str, name: str) -> tuple[Any, str, str]:
    fs, root = store_root(store)
    base = f"{root}/{reg.model_path(name, '')}".rstrip("/")
    return fs, base, f"{base}/{_CURRENT}"


def current_version(store: str, name: str) -> str | None:
    """The version the nightly run scores with (``None`` before the first model)."""
    fs, _, path = _current_path(store, name)
    if not fs.exists(path):
        return None
    return json.loads(fs.cat_file(path))["version"]


def label_source_name(labels: str | Path) -> str:
    """The file name of a label file, as recorded in ``model.json`` (no folders)."""
    return str(labels).replace("\\", "/").rsplit("/", 1)[-1]


def prepare_labels(
    store: str,
    labels: str | Path | None,
    *,
    secret: bytes | Callable[[], bytes],
    stored: str | None = None,
) -> str | None:
    """Pseudonymise a label file and record the table in the store, once.

    Parameters
    ----------
    store
        Store URL or path.
    labels
        Label file (CSV/Parquet, see :func:`medpipe.models.labels.read_labels`), or
        ``None`` when the run has no labels.
    secret
        Pseudonymisation secret, or a function returning it (called only when a label
        file is read, so a run without labels needs no secret).
    stored
        The store path of a table recorded earlier in the same run: returned as it is,
        the file is not read again.

    Returns
    -------
    str or None
        ``labels/<hash>.parquet``, or ``None`` without labels.
    """
    if stored is not None:
        return stored
    if labels is None:
        return None
    return lab.write_labels(store, _read_labels(labels, secret))


def labels_path(labels: str | Path | None, *, secret: bytes | Callable[[], bytes]) -> str | None:
    """The store path :func:`prepare_labels` records ``labels`` under, writing nothing.

    Returns
    -------
    str or None
        ``labels/<hash>.parquet``, or ``None`` without labels.
    """
    if labels is None:
        return None
    return lab.stored_labels_path(_read_labels(labels, secret))


def _read_labels(labels: str | Path, secret: bytes | Callable[[], bytes]) -> pd.DataFrame:
    return lab.read_labels(labels, secret=secret() if callable(secret) else secret)


def labels_changed(store: str, name: str, version: str | None, labels_path: str) -> bool:
    """True when ``version`` was trained on other labels than ``labels_path`` (or is None)."""
    if version is None:
        return True
    return reg.read_model_json(store, name, version)["labels"]["path"] != labels_path


def needs_training(
    store: str, name: str, labels_path: str | None, *, retrain: bool = False
) -> bool:
    """Whether the nightly run trains a new version of ``name``.

    Parameters
    ----------
    store, name
        The store and the model name.
    labels_path
        The run's recorded label table (:func:`prepare_labels`); ``None``: no labels,
        no training.
    retrain
        Train even when the labels did not change.

    Returns
    -------
    bool
    """
    if labels_path is None:
        return False
    return retrain or labels_changed(store, name, current_version(store, name), labels_path)


def promotion_decision(
    candidate_auc: float, current: Mapping[str, float] | None
) -> tuple[bool, str]:
    """The promotion rule on numbers alone.

    Parameters
    ----------
    candidate_auc
        The new model's CV AUC.
    current
        The current model's CV AUC (``value``, ``ci_low``), or ``None`` without one.

    Returns
    -------
    tuple of (bool, str)
        Whether the candidate becomes current, and why.
    """
    if current is None:
        return True, "no current model"
    ok = candidate_auc >= current["ci_low"]
    sign = ">=" if ok else "<"
    return ok, f"CV AUC {candidate_auc:.3f} {sign} current CI lower bound {current['ci_low']:.3f}"


def promote(
    store: str, name: str, candidate: TrainResult | Mapping[str, Any]
) -> dict[str, Any]:
    """Make ``candidate`` current unless its CV AUC is below the current CI lower bound.

    Parameters
    ----------
    store, name
        The store and the model name.
    candidate
        The trained version: a :class:`~medpipe.results.TrainResult` or a mapping
        with ``version`` and ``metrics`` (``metrics["auc"]["value"]``).

    Returns
    -------
    dict
        The recorded decision (``promoted``, ``reason``, versions and AUCs).
    """
    if isinstance(candidate, TrainResult):
        candidate = candidate.as_candidate()
    fs, base, path = _current_path(store, name)
    state = json.loads(fs.cat_file(path)) if fs.exists(path) else {"version": None, "decisions": []}
    new_auc = candidate["metrics"]["auc"]["value"]
    decision: dict[str, Any] = {
        "candidate": candidate["version"],
        "candidate_cv_auc": new_auc,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    current = None
    if state["version"] is not None:
        current = reg.read_model_json(store, name, state["version"])["metrics"]["cv"]["auc"]
        decision.update(
            current=state["version"],
            current_cv_auc=current["value"],
            current_ci_low=current["ci_low"],
        )
    promoted, reason = promotion_decision(new_auc, current)
    decision.update(promoted=promoted, reason=reason)
    if promoted:
        state["version"] = candidate["version"]
    state["decisions"] = [*state.get("decisions", []), decision]
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(path, json.dumps(state, indent=1).encode())
    return decision


def unscored_count(store: str, name: str, version: str, features_group: str) -> int:
    """Samples of the feature table without a score of their current input (metadata only).

    See :func:`medpipe.models.scoring.count_unscored`: a re-ingested series counts.
    """
    return count_unscored(store, scores_group(name, version), features_group)


@dataclass(frozen=True)
class ScoringPlan:
    """What the model stage scores.

    Attributes
    ----------
    name
        The model name.
    version
        The current version (``None``: nothing to score with).
    unscored
        Samples of the feature table it has not scored yet.
    note
        Why there is nothing to score with (no model, unreadable ``model.json``).
    meta
        The current version's ``model.json``.
    """

    name: str
    version: str | None
    unscored: int = 0
    note: str | None = None
    meta: Mapping[str, Any] | None = None

    @property
    def run(self) -> bool:
        """True when the score flow has samples to score."""
        return self.meta is not None and self.unscored > 0

    @property
    def ref(self) -> str:
        """``name:version`` of the model to score with."""
        return f"{self.name}:{self.version}"


def plan_scoring(store: str, name: str, features_group: str) -> ScoringPlan:
    """Which version scores, and how many samples wait for it (metadata only).

    Parameters
    ----------
    store, name
        The store and the model name.
    features_group
        The feature table to score.

    Returns
    -------
    ScoringPlan
    """
    version = current_version(store, name)
    if version is None:
        return ScoringPlan(name, None, note=NO_MODEL_NOTE)
    try:
        meta = reg.read_model_json(store, name, version)
    except ModelError as err:
        return ScoringPlan(name, version, note=str(err))
    return ScoringPlan(
        name, version, unscored=unscored_count(store, name, version, features_group), meta=meta
    )


def model_stage_result(
    store: str,
    plan: ScoringPlan,
    *,
    trained: TrainResult | None = None,
    decision: Mapping[str, Any] | None = None,
    scored: int = 0,
) -> ModelStageResult:
    """The model stage's result, with the current model's CV metrics and ROC for the report.

    Parameters
    ----------
    store
        Store URL or path.
    plan
        The scoring plan made after any training.
    trained, decision
        The version trained by this run and its promotion decision, if any.
    scored
        Samples scored by this run.

    Returns
    -------
    ModelStageResult
    """
    from medpipe.report import png_bytes_uri

    metrics = roc = None
    if plan.meta is not None:
        cv = plan.meta["metrics"]["cv"]
        metrics = {k: format_metric(k, cv[k]) for k in metric_keys(cv)}
        roc = png_bytes_uri(reg.read_model_file(store, plan.name, plan.version, "roc_cv.png"))
    return ModelStageResult(
        name=plan.name,
        version=plan.version,
        trained=trained,
        decision=decision,
        scored=scored,
        metrics=metrics,
        roc_uri=roc,
        note=plan.note,
    )
