"""The nightly QA report: one self-contained HTML page per run.

``reports/<run-id>/index.html`` shows before/after thumbnails of preprocessing for a
few new series, feature distributions against the training set (a drift signal),
the ROC of the current model, and the quarantine table.  Images are embedded as
PNG data URIs so the page can be copied or attached anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medpipe import store as _store

if TYPE_CHECKING:
    from medpipe.ingest import IngestSummary
    from medpipe.results import FeatureResult, ModelStageResult, PreprocessResult, ScoreResult

__all__ = [
    "REPORTS",
    "png_data_uri",
    "png_bytes_uri",
    "thumbnail_pair",
    "drift_figure",
    "feature_drift",
    "quarantine_rows",
    "write_report",
    "write_nightly_report",
    "report_url",
    "ingest_markdown",
    "nightly_markdown",
    "metrics_rows",
    "metrics_markdown",
    "score_markdown",
]

#: Store folder of the QA reports.
REPORTS = "reports"


def png_bytes_uri(png: bytes) -> str:
    """A PNG file's bytes as a ``data:image/png;base64,…`` URI (for HTML and Markdown)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def png_data_uri(fig: Any) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,…`` URI and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return png_bytes_uri(buf.getvalue())


def _mid_plane(store: str, path: str) -> np.ndarray:
    image = _store.open_image(store, path)
    if "c" in image.dims:
        image = image.isel(c=0)
    if "t" in image.dims:
        image = image.isel(t=0)
    if "z" in image.dims:
        image = image.isel(z=image.sizes["z"] // 2)
    return np.asarray(image.values, dtype=float)  # one small plane, for a thumbnail


def thumbnail_pair(store: str, key: str, *, preprocessed: str) -> str:
    """Before/after PNG (data URI) of the middle slice of one series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax, path, title in (
        (axes[0], f"images/{key}", "ingested"),
        (axes[1], f"{preprocessed}/{key}", "preprocessed"),
    ):
        plane = _mid_plane(store, path)
        lo, hi = np.percentile(plane, [1, 99])
        ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        ax.set_title(title)
        ax.axis("off")
    return png_data_uri(fig)


def drift_figure(current: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> str:
    """Histograms of a few features: this run's samples against the training set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(current)[:6]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3 * max(1, len(names)), 2.6))
    for ax, name in zip(np.atleast_1d(axes), names, strict=False):
        cur = np.asarray(current[name], dtype=float)
        ref = np.asarray(reference.get(name, []), dtype=float)
        both = np.concatenate([cur[np.isfinite(cur)], ref[np.isfinite(ref)]])
        bins = np.histogram_bin_edges(both, bins=20) if both.size else 10
        if ref.size:
            ax.hist(ref[np.isfinite(ref)], bins=bins, alpha=0.5, density=True, label="training")
        ax.hist(cur[np.isfinite(cur)], bins=bins, alpha=0.5, density=True, label="this run")
        ax.set_title(name, fontsize=8)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return png_data_uri(fig)


def write_report(
    store: str,
    run_id: str,
    *,
    summary: Mapping[str, Any],
    stages: Mapping[str, float],
    thumbnails: Mapping[str, str] = (),
    drift: str | None = None,
    roc: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    quarantine: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Write ``reports/<run-id>/index.html`` and return its store path.

    Parameters
    ----------
    store
        Store URL or path.
    run_id
        The run.
    summary
        Counts of the run (new, changed, quarantined…).
    stages
        Stage name → seconds.
    thumbnails
        Series key → before/after PNG data URI.
    drift, roc
        PNG data URIs (optional).
    metrics
        The current model's metrics (optional).
    quarantine
        Rows with ``path`` and ``reason``.  Paths are relative to the archive: the report
        is for operators, like ``medpipe quarantine``.

    Returns
    -------
    str
        ``reports/<run-id>/index.html``.
    """
    esc = html.escape
    parts = [f"<h1>medpipe nightly run {esc(run_id)}</h1>", "<h2>Summary</h2>", "<table>"]
    parts += [
        f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, dict)
    ]
    parts += ["</table>", "<h2>Stage durations</h2>", "<table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{v:.1f} s</td></tr>" for k, v in stages.items()]
    parts.append("</table>")
    if thumbnails:
        parts.append("<h2>Preprocessing, before and after</h2>")
        parts += [
            f"<figure><img src='{uri}'><figcaption>{esc(key)}</figcaption></figure>"
            for key, uri in thumbnails.items()
        ]
    if drift:
        parts += [
            "<h2>Feature distributions (drift against the training set)</h2>",
            f"<img src='{drift}'>",
        ]
    if metrics or roc:
        parts.append("<h2>Current model</h2>")
        if metrics:
            parts.append(
                "<table>"
                + "".join(
                    f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
                    for k, v in metrics.items()
                )
                + "</table>"
            )
        if roc:
            parts.append(f"<img src='{roc}'>")
    parts += [
        f"<h2>Quarantine ({len(quarantine)} files)</h2>",
        "<table>",
        "<tr><th>path</th><th>reason</th></tr>",
    ]
    parts += [
        f"<tr><td>{esc(str(r.get('path')))}</td><td>{esc(str(r.get('reason')))}</td></tr>"
        for r in quarantine
    ]
    parts.append("</table>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>medpipe "
        f"{esc(run_id)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:left}figure{display:inline-block}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    fs, root = _store.store_root(store)
    path = f"{REPORTS}/{run_id}/index.html"
    fs.makedirs(f"{root}/{REPORTS}/{run_id}", exist_ok=True)
    fs.pipe_file(f"{root}/{path}", page.encode())
    return path


def feature_drift(
    store: str, features_group: str, new_series: Sequence[str], *, n_features: int = 6
) -> str | None:
    """Drift figure of a few features: the new series' samples against all the others.

    Returns ``None`` when there are no new samples.  Only ``n_features`` columns of the
    (small) feature table are read.
    """
    from medpipe.features.dataset import open_features

    new = set(new_series)
    if not new:
        return None
    table = open_features(store, features_group)
    is_new = np.array([str(s) in new for s in table["series"].values.tolist()])
    if not is_new.any():
        return None
    names = [str(n) for n in table["feature"].values[:n_features].tolist()]
    values = table["features"].sel(feature=names).values
    return drift_figure(
        {n: values[is_new, i] for i, n in enumerate(names)},
        {n: values[~is_new, i] for i, n in enumerate(names)},
    )


def quarantine_rows(store: str) -> list[dict[str, Any]]:
    """``path`` and ``reason`` of every currently quarantined file (for the report)."""
    from medpipe import catalog

    cat = catalog.current(store)
    if cat.empty:
        return []
    return cat[cat["status"] == "quarantined"][["path", "reason"]].to_dict("records")


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
) -> str:
    """Write a nightly run's QA report (:func:`write_report`) from its stages' results.

    Parameters
    ----------
    store
        Store URL or path.
    run_id
        The nightly run.
    ingest, preprocess, features, model
        The stages' results.
    stages
        Stage name → seconds.
    n_thumbnails
        Before/after thumbnails of at most this many newly preprocessed series.

    Returns
    -------
    str
        ``reports/<run-id>/index.html``.
    """
    return write_report(
        store,
        run_id,
        summary={k: v for k, v in ingest.to_dict().items() if k != "reasons"},
        stages=stages,
        thumbnails={
            key: thumbnail_pair(store, key, preprocessed=preprocess.group)
            for key in preprocess.keys[:n_thumbnails]
        },
        drift=feature_drift(store, features.group, features.keys),
        roc=model.roc_uri,
        metrics=model.metrics,
        quarantine=quarantine_rows(store),
    )


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
    report: str,
    url: str,
) -> str:
    """Markdown of a nightly run: ingest counts, stage times, the current model, the report."""
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
    lines += ["", f"QA report: [{report}]({url})"]
    return "\n".join(lines)


def metrics_rows(metrics: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per metric (value and CI, 4 decimals), for a table artifact."""
    from medpipe.models.metrics import METRICS

    return [
        {
            "metric": k,
            "value": round(metrics[k]["value"], 4),
            "ci_low": round(metrics[k]["ci_low"], 4),
            "ci_high": round(metrics[k]["ci_high"], 4),
        }
        for k in METRICS
    ]


def metrics_markdown(
    title: str,
    metrics: Mapping[str, Mapping[str, float]],
    *,
    png: bytes | None = None,
    png_path: str | None = None,
) -> str:
    """Markdown of a model's metrics with CIs, and its ROC plot embedded as a data URI."""
    from medpipe.models.metrics import METRICS, format_metric

    lines = "\n".join(f"- {format_metric(k, metrics[k])}" for k in METRICS)
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
