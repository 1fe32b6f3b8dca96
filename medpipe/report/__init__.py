"""The QA report of a run, and the Markdown of every Prefect artifact.

``reports/<run-id>/`` holds one report per run: ``index.html`` (no external resource),
its PNG figures and ``report.json``.  At the top, the features whose distribution in
this run's new samples drifted from the training set (PSI at or above a threshold,
:mod:`medpipe.report.drift`); then the run's counts and stage times, the histograms of
the most drifted features on quantile-clipped ranges, the current model's ROC (from its
model folder), its reliability diagram and Brier score, before/after thumbnails of new
series and the quarantine reasons.  No patient identifier or archive path appears:
series by their pseudonymous key, quarantined files by reason only.

Modules: :mod:`~medpipe.report.drift` (PSI, KS), :mod:`~medpipe.report.figures`
(PNG figures), :mod:`~medpipe.report.runs` (which run), :mod:`~medpipe.report.page`
(computing and writing the report), :mod:`~medpipe.report.render` (HTML, and the QA
artifact's Markdown).  A nightly run with nothing to do writes no report (:func:`needs_report`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medpipe import store as _store
from medpipe.report.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift, drift_table, psi
from medpipe.report.page import (
    QAReport,
    RunContext,
    build_report,
    list_runs,
    run_context,
    write_qa_report,
)
from medpipe.report.render import qa_markdown

if TYPE_CHECKING:
    from medpipe.ingest import IngestSummary
    from medpipe.results import FeatureResult, ModelStageResult, PreprocessResult, ScoreResult

__all__ = [
    "REPORTS",
    "DEFAULT_PSI_THRESHOLD",
    "FeatureDrift",
    "QAReport",
    "RunContext",
    "psi",
    "drift_table",
    "build_report",
    "list_runs",
    "run_context",
    "write_qa_report",
    "qa_markdown",
    "needs_report",
    "mid_plane",
    "png_bytes_uri",
    "quarantine_rows",
    "write_report",
    "write_nightly_report",
    "phi_audit_record",
    "report_url",
    "ingest_markdown",
    "nightly_markdown",
    "metrics_rows",
    "metrics_markdown",
    "score_markdown",
]

#: Store folder of the QA reports.
REPORTS = _store.layout.REPORTS


def png_bytes_uri(png: bytes) -> str:
    """A PNG file's bytes as a ``data:image/png;base64,…`` URI (for HTML and Markdown)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def mid_plane(store: str, path: str) -> np.ndarray:
    """The middle z plane (first channel, first time point) of a stored image, as floats."""
    image = _store.open_image(store, path)
    if "c" in image.dims:
        image = image.isel(c=0)
    if "t" in image.dims:
        image = image.isel(t=0)
    if "z" in image.dims:
        image = image.isel(z=image.sizes["z"] // 2)
    return np.asarray(image.values, dtype=float)  # one small plane, for a thumbnail


def quarantine_rows(store: str) -> list[dict[str, Any]]:
    """``path`` and ``reason`` of every currently quarantined file (for the report)."""
    from medpipe import catalog

    cat = catalog.current(store)
    if cat.empty:
        return []
    return cat[cat["status"] == "quarantined"][["path", "reason"]].to_dict("records")


def needs_report(*, any_work: bool, model: ModelStageResult) -> bool:
    """Whether a nightly run writes a QA report: not when nothing changed.

    A run writes one when a data stage ran, a model was trained or samples were scored;
    a night with nothing to do leaves ``reports/`` as it was.
    """
    return bool(any_work or model.trained is not None or model.scored)


def write_report(
    store: str,
    run_id: str | None = None,
    *,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    model: str | None = None,
    features: str | None = None,
) -> tuple[str, QAReport]:
    """Write the QA report of any run of a store (``medpipe report``).

    Parameters
    ----------
    store
        Store URL or path; the caller holds its write lock.
    run_id
        The run (:func:`list_runs`); default the latest.
    threshold
        PSI at or above which a feature is flagged.
    model, features
        The model name and feature table (default: the run's, else the store's).

    Returns
    -------
    tuple of (str, QAReport)
        ``reports/<run-id>/index.html`` and the report.
    """
    ctx = run_context(store, run_id)
    if model or features:
        ctx = replace(ctx, model=model or ctx.model, features_group=features or ctx.features_group)
    rep = build_report(store, ctx, threshold=threshold)
    return write_qa_report(store, rep), rep


def write_nightly_report(
    store: str,
    run_id: str,
    *,
    ingest: IngestSummary,
    preprocess: PreprocessResult,
    features: FeatureResult,
    model: ModelStageResult,
    stages: Mapping[str, float],
    n_thumbnails: int = 4,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    archive: str | None = None,
) -> tuple[str, QAReport]:
    """Write a nightly run's QA report from its stages' results.

    Parameters
    ----------
    store
        Store URL or path; the caller holds its write lock.
    run_id
        The nightly run.
    ingest, preprocess, features, model
        The stages' results: "this run" is the series whose features it computed.
    stages
        Stage name → seconds.
    n_thumbnails
        Before/after thumbnails of at most this many new series.
    threshold
        PSI at or above which a feature is flagged.
    archive
        The archive: the report then shows the PHI audit of the store against it
        (:func:`medpipe.audit.audit_store`; ``PHI audit: 0 hits over N values in M files``).

    Returns
    -------
    tuple of (str, QAReport)
        ``reports/<run-id>/index.html`` and the report.
    """
    ctx = RunContext(
        run_id=run_id,
        new_series=tuple(features.keys or preprocess.keys),
        features_group=features.group,
        model=model.name,
        ingest_run=ingest.run_id if ingest.run_id != run_id else None,
        summary={k: v for k, v in ingest.to_dict().items() if k not in ("reasons", "run_id")},
        stages=dict(stages),
    )
    rep = build_report(store, ctx, threshold=threshold, n_thumbnails=n_thumbnails)
    if archive is not None:
        rep = replace(rep, audit=phi_audit_record(store, archive))
    return write_qa_report(store, rep), rep


def phi_audit_record(store: str, archive: str) -> dict[str, Any]:
    """The PHI audit's record for a report (counts and locations, never a value).

    An audit that cannot complete (an unreadable archive) says so in its line rather
    than failing the run that wrote everything else.
    """
    from medpipe.audit import audit_store

    try:
        return audit_store(store, archive).record()
    except Exception as err:  # noqa: BLE001 - the report says so; the run keeps its report
        return {"line": f"PHI audit: not completed ({type(err).__name__}: {err})"}


def report_url(store: str, path: str) -> str:
    """The URL (``file://…``, ``s3://…``) of a store path, for links in artifacts."""
    fs, root = _store.store_root(store)
    return fs.unstrip_protocol(f"{root}/{path}")


def ingest_markdown(summary: IngestSummary) -> str:
    """Markdown of an ingest run: counts and quarantine reasons (no paths, no PHI)."""
    lines = [
        f"# Ingest run `{summary.run_id}`",
        "",
        "| scanned | new | changed | unchanged | missing | series ingested | files ingested "
        "| quarantined | skipped |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary.scanned} | {summary.new} | {summary.changed} | {summary.unchanged} "
        f"| {summary.missing} | {summary.series_ingested} | {summary.files_ingested} "
        f"| {summary.quarantined} | {summary.skipped} |",
    ]
    if summary.reasons:
        lines += ["", "## Quarantine reasons", "", "| files | reason |", "|---|---|"]
        lines += [
            f"| {n} | {r.replace('|', '/')} |"
            for r, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1])
        ]
    return "\n".join(lines) + "\n"


def nightly_markdown(
    ingest: IngestSummary,
    stages: Mapping[str, float],
    model: ModelStageResult,
    *,
    report: str | None,
    url: str | None,
) -> str:
    """Markdown of a nightly run: ingest counts, stage times, the current model, the report.

    ``report=None``: the run changed nothing and wrote no report (said in one line).
    """
    lines = [ingest_markdown(ingest), "## Stage durations", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    if model.metrics:
        lines += [
            "",
            f"## Current model `{model.name}:{model.version}`",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in model.metrics.items()]
    if report is None:
        lines += ["", "Nothing changed: no QA report was written."]
    else:
        lines += ["", f"QA report: [{report}]({url})"]
    return "\n".join(lines)


def metrics_rows(metrics: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per metric (value and CI, 4 decimals), for a table artifact."""
    from medpipe.models.metrics import metric_keys

    return [
        {
            "metric": k,
            "value": round(metrics[k]["value"], 4),
            "ci_low": round(metrics[k]["ci_low"], 4),
            "ci_high": round(metrics[k]["ci_high"], 4),
        }
        for k in metric_keys(metrics)
    ]


def metrics_markdown(
    title: str,
    metrics: Mapping[str, Mapping[str, float]],
    *,
    png: bytes | None = None,
    png_path: str | None = None,
) -> str:
    """Markdown of a model's metrics with CIs, and its ROC plot embedded as a data URI."""
    from medpipe.models.metrics import format_metric, metric_keys

    lines = "\n".join(f"- {format_metric(k, metrics[k])}" for k in metric_keys(metrics))
    md = f"### {title}\n\n{lines}\n"
    if png:
        md += f"\n![ROC]({png_bytes_uri(png)})\n\n`{png_path}`\n"
    return md


def score_markdown(model: str, result: ScoreResult) -> str:
    """Markdown of a score run: new and total samples, the scores group."""
    return (
        f"### scores of {model}\n\n| new | total | group |\n|---|---|---|\n"
        f"| {result.scored} | {result.total} | `{result.group}` |\n"
    )
