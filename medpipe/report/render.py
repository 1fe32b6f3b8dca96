"""The QA report as an HTML page and as the Markdown of the Prefect artifact."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medpipe.report.page import QAReport

__all__ = ["render", "qa_markdown", "audit_line", "audit_html"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:80em;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ddd;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;"
    "padding:2px 8px;text-align:left;font-size:.9em}td.n{text-align:right}"
    ".flag{background:#fde8e8;border:1px solid #e0a0a0;padding:.6em 1em;border-radius:4px}"
    ".ok{background:#e8f5e8;border:1px solid #a0d0a0;padding:.6em 1em;border-radius:4px}"
    "figure{display:inline-block;margin:.4em 1em .4em 0;vertical-align:top}"
    "figcaption{font-size:.8em;color:#555;max-width:40em}img{max-width:100%}"
    "code{font-size:.9em}"
)


def _num(v: float, fmt: str = ".3f") -> str:
    return format(v, fmt) if np.isfinite(v) else "–"


def _figure(rep: QAReport, fname: str) -> str:
    cap = html.escape(rep.captions.get(fname, ""))
    return f"<figure><img src='{fname}' alt='{cap}'><figcaption>{cap}</figcaption></figure>"


def _drift_rows(rows: list, esc=html.escape) -> str:
    out = ["<tr><th>feature</th><th>PSI</th><th>KS</th><th>KS p-value</th>"
           "<th>this run</th><th>training set</th></tr>"]
    out += [
        f"<tr><td><code>{esc(d.feature)}</code></td><td class=n>{_num(d.psi)}</td>"
        f"<td class=n>{_num(d.ks)}</td><td class=n>{_num(d.ks_pvalue, '.2g')}</td>"
        f"<td class=n>{d.n_current}</td><td class=n>{d.n_reference}</td></tr>"
        for d in rows
    ]
    return "<table>" + "".join(out) + "</table>"


def audit_line(rep: QAReport) -> str:
    """``PHI audit: 0 hits over N values in M files``, or why there is none."""
    if rep.audit is None:
        return "PHI audit: not run for this report (medpipe audit STORE --archive ARCHIVE)"
    return str(rep.audit["line"])


def audit_html(rep: QAReport) -> str:
    """The audit's line as a paragraph, flagged with the hits' locations when it found any."""
    esc = html.escape
    hits = int(rep.audit.get("hits", 0)) if rep.audit else 0
    if not hits:
        done = rep.audit is not None and "hits" in rep.audit
        return f"<p{' class=ok' if done else ''}>{esc(audit_line(rep))}.</p>"
    where = ", ".join(f"<code>{esc(str(x))}</code>" for x in rep.audit.get("locations", [])[:20])
    return (f"<p class=flag><b>{esc(audit_line(rep))}</b> in {where} "
            "(the values: <code>medpipe audit STORE --archive ARCHIVE</code>).</p>")


def render(rep: QAReport) -> str:
    """The report's ``index.html``: self-contained apart from its own PNG files."""
    esc = html.escape
    ctx = rep.context
    flagged = list(rep.flagged)
    parts = [f"<h1>medpipe QA report, run <code>{esc(ctx.run_id)}</code></h1>"]
    if rep.drift:
        if flagged:
            names = ", ".join(f"<code>{esc(d.feature)}</code>" for d in flagged[:20])
            more = f" and {len(flagged) - 20} more" if len(flagged) > 20 else ""
            parts.append(
                f"<p class=flag><b>{len(flagged)} of {len(rep.drift)} features drifted</b> "
                f"(PSI ≥ {rep.threshold:g}) against {esc(rep.reference or '')}: "
                f"{names}{more}.</p>"
            )
        else:
            parts.append(
                f"<p class=ok>No feature drifted: every one of the {len(rep.drift)} features "
                f"has PSI &lt; {rep.threshold:g} against {esc(rep.reference or '')}.</p>"
            )
    else:
        parts.append("<p>No drift check: this run brought no new samples with features, "
                     "or there is no training set to compare with yet.</p>")
    parts += ["<h2>Summary</h2>", "<table>"]
    parts += [
        f"<tr><th>{esc(str(k))}</th><td class=n>{esc(str(v))}</td></tr>"
        for k, v in ctx.summary.items()
        if not isinstance(v, dict)
    ]
    parts.append("</table>")
    parts.append(audit_html(rep))
    if ctx.stages:
        parts += ["<h2>Stage durations</h2>", "<table>"]
        parts += [f"<tr><th>{esc(k)}</th><td class=n>{v:.1f} s</td></tr>"
                  for k, v in ctx.stages.items()]
        parts.append("</table>")
    if rep.drift:
        parts.append("<h2>Feature drift against the training set</h2>")
        if "drift.png" in rep.figures:
            parts.append(_figure(rep, "drift.png"))
        top = flagged if len(flagged) > 10 else list(rep.drift[:10])
        parts.append(f"<p>{'Flagged' if len(flagged) > 10 else 'Largest PSI'} "
                     f"({len(top)} of {len(rep.drift)} features):</p>")
        parts.append(_drift_rows(top))
        parts.append(
            "<details><summary>every feature</summary>" + _drift_rows(list(rep.drift))
            + "</details>"
        )
    if rep.model:
        parts.append(f"<h2>Current model <code>{esc(rep.model)}</code></h2>")
        parts.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in rep.model_lines) + "</ul>")
        for fname in ("roc-cv.png", "roc-val.png", "calibration.png"):
            if fname in rep.figures:
                parts.append(_figure(rep, fname))
    thumbs = sorted(f for f in rep.figures if f.startswith("thumb-"))
    if thumbs:
        parts.append("<h2>New series, before and after preprocessing</h2>")
        parts += [_figure(rep, f) for f in thumbs]
    if rep.suv_not_computed:
        parts += [f"<h2>New PET series without SUV ({len(rep.suv_not_computed)})</h2>",
                  "<p>SUV not computed: these keep their stored units.</p><table>",
                  "<tr><th>series</th><th>reason</th></tr>"]
        parts += [f"<tr><td><code>{esc(k)}</code></td><td>{esc(r)}</td></tr>"
                  for k, r in sorted(rep.suv_not_computed.items())]
        parts.append("</table>")
    total = sum(rep.quarantine.values())
    parts += [f"<h2>Quarantine ({total} files)</h2>", "<table>",
              "<tr><th>files</th><th>reason</th></tr>"]
    parts += [f"<tr><td class=n>{n}</td><td>{esc(r)}</td></tr>"
              for r, n in rep.quarantine.items()]
    parts.append("</table><p>The files: <code>medpipe quarantine STORE</code>.</p>")
    return (
        "<!doctype html><html lang=en><head><meta charset='utf-8'>"
        f"<title>medpipe QA {esc(ctx.run_id)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )


def qa_markdown(rep: QAReport, *, path: str, url: str) -> str:
    """Markdown of the Prefect artifact: the flags, the key figures inline, the link."""
    from medpipe.report import png_bytes_uri

    flagged = list(rep.flagged)
    lines = [f"# QA report `{rep.context.run_id}`", ""]
    if rep.drift:
        lines.append(
            f"**{len(flagged)} of {len(rep.drift)} features drifted** (PSI ≥ {rep.threshold:g}) "
            f"against {rep.reference}."
        )
        if flagged:
            lines += ["", "| feature | PSI | KS | KS p-value |", "|---|---|---|---|"]
            lines += [f"| `{d.feature}` | {_num(d.psi)} | {_num(d.ks)} | "
                      f"{_num(d.ks_pvalue, '.2g')} |" for d in flagged[:25]]
    else:
        lines.append("No drift check (no new samples with features, or no training set).")
    lines += ["", audit_line(rep)]
    if rep.model:
        lines += ["", f"## Model `{rep.model}`", ""] + [f"- {x}" for x in rep.model_lines]
    if rep.suv_not_computed:
        lines += ["", f"**{len(rep.suv_not_computed)} PET series without SUV** (SUV not "
                      "computed; they keep their stored units)."]
    for fname in ("drift.png", "calibration.png", "roc-val.png", "roc-cv.png"):
        if fname in rep.figures:
            lines += ["", f"![{rep.captions.get(fname, fname)}]"
                          f"({png_bytes_uri(rep.figures[fname])})"]
    lines += ["", f"Full report: [{path}]({url})"]
    return "\n".join(lines) + "\n"
