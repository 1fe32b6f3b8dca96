"""Typed, frozen results of the pipeline stages (what flows return and the CLI prints).

A stage that did not run says so in its ``skipped`` field (the reason, e.g. "nothing
pending"); a series a stage could not handle is listed with its reason, never encoded
in a sentinel string.  The ingest stage's result is :class:`medpipe.ingest.IngestSummary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medpipe.ingest import IngestSummary

__all__ = [
    "IngestSummary",
    "PreprocessBatch",
    "PreprocessResult",
    "FeatureResult",
    "TrainResult",
    "EvaluationResult",
    "ScoreResult",
    "ModelStageResult",
    "NightlyResult",
]


@dataclass(frozen=True)
class PreprocessBatch:
    """What one batch of series gave: written outputs and series that were left out.

    Attributes
    ----------
    written
        Series key → store path of its preprocessed image.
    unsupported
        Series key → why it was not preprocessed (e.g. not a grey-level z,y,x volume).
    """

    written: Mapping[str, str] = field(default_factory=dict)
    unsupported: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreprocessResult:
    """The preprocess stage of one run.

    Attributes
    ----------
    group
        The output group, ``preprocessed/<cfg-hash>``.
    keys
        The series preprocessed by this run, sorted.
    unsupported
        Series key → why it was left out.
    skipped
        Why the stage did not run at all (``None`` when it ran).
    """

    group: str
    keys: tuple[str, ...] = ()
    unsupported: Mapping[str, str] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def done(self) -> int:
        """Number of series preprocessed by this run."""
        return len(self.keys)

    @classmethod
    def from_batches(cls, group: str, batches: list[PreprocessBatch]) -> PreprocessResult:
        """Merge the batches of a run."""
        written: dict[str, str] = {}
        unsupported: dict[str, str] = {}
        for b in batches:
            written.update(b.written)
            unsupported.update(b.unsupported)
        return cls(group=group, keys=tuple(sorted(written)), unsupported=unsupported)


@dataclass(frozen=True)
class FeatureResult:
    """The feature stage of one run.

    Attributes
    ----------
    group
        The feature table, ``features/<cfg-hash>[-<pre-hash>]``.
    computed
        Series computed by this run.
    kept
        Samples kept as stored (``None`` when the stage did not run).
    keys
        The series computed by this run.
    skipped
        Why the stage did not run (``None`` when it ran).
    """

    group: str
    computed: int = 0
    kept: int | None = None
    keys: tuple[str, ...] = ()
    skipped: str | None = None

    @classmethod
    def from_update(cls, out: Mapping[str, Any]) -> FeatureResult:
        """From :func:`medpipe.features.dataset.update_features`'s dict."""
        return cls(
            group=out["group"],
            computed=int(out["computed"]),
            kept=out.get("kept"),
            keys=tuple(out.get("keys", ())),
        )


@dataclass(frozen=True)
class TrainResult:
    """A registered model (:func:`medpipe.models.train.train_model`).

    Attributes
    ----------
    name, version
        ``models/<name>/<version>``.
    estimator
        The chosen estimator (``svm``, ``logreg``, ``rf``, ``vote``…).
    cv_auc
        Its patient-grouped cross-validated AUC.
    metrics
        CV metrics with CIs (metric → ``value``, ``ci_low``, ``ci_high``).
    n_train
        Training samples.
    search
        Estimator → best CV AUC of its grid search.
    evaluation
        Its metrics on a held-out split, when the run evaluated it.
    """

    name: str
    version: str
    estimator: str
    cv_auc: float
    metrics: Mapping[str, Mapping[str, float]]
    n_train: int
    search: Mapping[str, float] = field(default_factory=dict)
    evaluation: EvaluationResult | None = None

    @classmethod
    def from_dict(cls, out: Mapping[str, Any]) -> TrainResult:
        """From :func:`~medpipe.models.train.train_model`'s dict."""
        return cls(
            name=out["name"],
            version=out["version"],
            estimator=out["estimator"],
            cv_auc=float(out["cv_auc"]),
            metrics=out["metrics"],
            n_train=int(out["n_train"]),
            search=dict(out.get("search", {})),
        )

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    def as_candidate(self) -> dict[str, Any]:
        """The ``version`` and ``metrics`` the promotion rule reads."""
        return {"version": self.version, "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on a held-out split (:func:`~medpipe.models.train.evaluate_model`).

    Attributes
    ----------
    model, split, n, n_positive
        What was evaluated, on how many samples.
    metrics
        Metric → ``value``, ``ci_low``, ``ci_high``.
    lines
        The metrics formatted one per line.
    roc
        Store path of the ROC plot (``None`` with one class only).
    report
        Store path of the JSON report.
    """

    model: str
    split: str
    n: int
    n_positive: int
    metrics: Mapping[str, Mapping[str, float]]
    lines: tuple[str, ...]
    roc: str | None
    report: str

    @classmethod
    def from_dict(cls, out: Mapping[str, Any]) -> EvaluationResult:
        """From :func:`~medpipe.models.train.evaluate_model`'s dict."""
        return cls(
            model=out["model"],
            split=out["split"],
            n=int(out["n"]),
            n_positive=int(out.get("n_positive", -1)),  # -1: k > 2 classes
            metrics=out["metrics"],
            lines=tuple(out["lines"]),
            roc=out.get("roc"),
            report=out["report"],
        )


@dataclass(frozen=True)
class ScoreResult:
    """Scores written by one run (:func:`~medpipe.models.train.score_model`).

    Attributes
    ----------
    group
        ``scores/<name>/<version>``.
    scored
        Samples scored by this run.
    total
        Samples in the group.
    skipped
        Why the stage did not run (``None`` when it ran).
    """

    group: str
    scored: int = 0
    total: int = 0
    skipped: str | None = None

    @classmethod
    def from_dict(cls, out: Mapping[str, Any]) -> ScoreResult:
        """From :func:`~medpipe.models.train.score_model`'s dict."""
        return cls(group=out["group"], scored=int(out["scored"]), total=int(out["total"]))


@dataclass(frozen=True)
class ModelStageResult:
    """The nightly model stage: (re)training, the promotion decision, scoring.

    Attributes
    ----------
    name
        The model name.
    version
        The current version after this run (``None`` before the first model).
    trained
        The model trained by this run, if any.
    decision
        The promotion decision recorded for it, if any.
    scored
        Samples scored by this run.
    metrics
        The current model's CV metrics, formatted (metric → line), for the report.
    roc_uri
        Its CV ROC plot as a PNG data URI.
    note
        Why nothing could be scored (no model yet, unreadable model…).
    """

    name: str
    version: str | None = None
    trained: TrainResult | None = None
    decision: Mapping[str, Any] | None = None
    scored: int = 0
    metrics: Mapping[str, str] | None = None
    roc_uri: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class NightlyResult:
    """One nightly run: each stage's result, stage durations and the QA report.

    Attributes
    ----------
    run_id
        The nightly run's id (also the report's folder).
    ingest, preprocess, features, model
        The stages' results.
    stages
        Stage name → seconds.
    report
        Store path of the QA report (``None``: nothing changed, no report written).
    """

    run_id: str
    ingest: IngestSummary
    preprocess: PreprocessResult
    features: FeatureResult
    model: ModelStageResult
    stages: Mapping[str, float]
    report: str | None
