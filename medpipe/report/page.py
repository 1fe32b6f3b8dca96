"""The QA report of one run: what it shows, and the page itself.

:func:`~medpipe.report.runs.run_context` says what a run brought (from the report's
own ``report.json`` or from the catalog), :func:`build_report` computes the report
(drift of every feature, figures, the current model's ROC and calibration) and
:func:`write_qa_report` writes ``reports/<run-id>/`` atomically: ``index.html``, its
PNG figures and ``report.json``.  The page has no external resource and no patient
identifier or archive path: series appear by their pseudonymous keys and quarantined
files by their reasons only.  The caller holds the store's write lock (the nightly
flow, ``medpipe report``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medpipe import store as _store
from medpipe.errors import MedpipeError, ModelError
from medpipe.report.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift, drift_table
from medpipe.report.figures import drift_png, thumbnail_png
from medpipe.report.model import model_section
from medpipe.report.runs import MANIFEST, RunContext, list_runs, run_context
from medpipe.store import layout, tables

__all__ = [
    "MANIFEST",
    "RunContext",
    "QAReport",
    "run_context",
    "list_runs",
    "build_report",
    "write_qa_report",
]

_PANELS = 12


@dataclass(frozen=True)
class QAReport:
    """A computed QA report (see :func:`build_report`).

    Attributes
    ----------
    context
        The run.
    threshold
        The PSI threshold of the flags.
    drift
        Every feature's drift, largest PSI first.
    reference
        What the training set is (e.g. "the 546 training rows of model m:v1").
    model, model_lines, brier, calibration_on
        The model (``name:version``), its metric lines, its Brier score and the rows
        the calibration was computed on.
    quarantine
        Reason → number of currently quarantined files.
    suv_not_computed
        This run's series key → why its PET values were not converted to SUV (they keep their
        stored units; see :func:`medpipe.io.coding.suv_not_computed`).
    figures
        File name → PNG bytes; ``ranges`` the plotted range of each drift panel.
    audit
        The PHI audit's record (:meth:`medpipe.audit.AuditResult.record`: counts and
        hit locations, no value), or ``None`` when the run did not audit.
    """

    context: RunContext
    threshold: float
    drift: tuple[FeatureDrift, ...] = ()
    reference: str | None = None
    model: str | None = None
    model_lines: tuple[str, ...] = ()
    brier: float | None = None
    calibration_on: str | None = None
    quarantine: Mapping[str, int] = field(default_factory=dict)
    suv_not_computed: Mapping[str, str] = field(default_factory=dict)
    figures: Mapping[str, bytes] = field(default_factory=dict)
    captions: Mapping[str, str] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    audit: Mapping[str, Any] | None = None

    @property
    def flagged(self) -> tuple[FeatureDrift, ...]:
        """The features whose PSI reached the threshold."""
        return tuple(d for d in self.drift if d.flagged)


# ---------------------------------------------------------------- which data


def _model_meta(store: str, name: str | None) -> dict[str, Any] | None:
    """``model.json`` of the current version of ``name`` (or of the store's only model)."""
    from medpipe.models import lifecycle
    from medpipe.models import registry as reg

    names = [name] if name else sorted({m["name"] for m in reg.list_models(store)})
    for n in names:
        version = lifecycle.current_version(store, n)
        versions = reg.list_versions(store, n)
        version = version or (versions[-1] if versions else None)
        if version is not None:
            try:
                return reg.read_model_json(store, n, version)
            except (ModelError, OSError, ValueError):
                return None
    return None


def _features_group(store: str, ctx: RunContext, meta: dict[str, Any] | None) -> str | None:
    from medpipe.features.dataset import open_features

    if ctx.features_group:
        return ctx.features_group
    if meta is not None:
        return str(meta["features_group"])
    fs, root = _store.store_root(store)
    base = f"{root}/{layout.FEATURES}"
    best, hits = None, -1
    new = set(ctx.new_series)
    for p in sorted(fs.ls(base, detail=False)) if fs.exists(base) else []:
        group = f"{layout.FEATURES}/{p.rstrip('/').rsplit('/', 1)[-1]}"
        if not tables.has_table(store, group):
            continue
        n = sum(str(s) in new for s in open_features(store, group)["series"].values)
        if n > hits:
            best, hits = group, n
    return best


def _reference(
    store: str, table: Any, ctx: RunContext, meta: dict[str, Any] | None
) -> tuple[Any, np.ndarray, str]:
    """The training set: (its table, a row mask, a description)."""
    from medpipe import catalog
    from medpipe.features.dataset import open_features
    from medpipe.models import labels as lab

    if meta is not None:
        ref = open_features(store, meta["features_group"])
        joined = lab.join_labels(ref, lab.read_stored_labels(store, meta["labels"]["path"]))
        known = np.isfinite(joined["label"].values)
        split = np.array([str(s) for s in joined["split"].values])
        mask = known & (split == "train") if meta["labels"].get("split_used") == "train" else known
        ref_name = f"{meta['name']}:{meta['version']}"
        return ref, mask, f"the {int(mask.sum())} training rows of model {ref_name}"
    series = np.array([str(s) for s in table["series"].values])
    mask = ~np.isin(series, list(ctx.new_series))
    if ctx.ingest_run:
        rows = catalog.read_catalog(store)
        rows = rows[rows["status"] == "ingested"]
        first = rows.groupby("series")["run_id"].min().astype(str)
        earlier = {s for s, r in first.items() if r < ctx.ingest_run}
        mask &= np.isin(series, list(earlier))
    return table, mask, f"the {int(mask.sum())} samples of earlier runs (no model yet)"


# ------------------------------------------------------------------------- the report


def _thumbnails(store: str, keys: Sequence[str], source: str | None) -> dict[str, bytes]:
    from medpipe.report import mid_plane

    out = {}
    for i, key in enumerate(keys):
        try:
            planes = [("ingested", mid_plane(store, layout.image(key)))]
            if source and source.startswith(layout.PREPROCESSED):
                planes.append(("preprocessed", mid_plane(store, layout.source_image(source, key))))
        except (OSError, KeyError, ValueError, MedpipeError):  # not in both groups
            continue
        out[f"thumb-{i}.png"] = thumbnail_png(planes)
    return out


def _suv_not_computed(store: str, keys: Sequence[str]) -> dict[str, str]:
    """Series key → why its SUV was not computed, for this run's PET series without SUV.

    Only the run's own series are read (a series' SUV is settled when it is ingested),
    so the cost grows with the night's changes; ``medpipe info`` lists the whole store.
    """
    from medpipe.io.coding import suv_not_computed

    out = {}
    for key in keys:
        path = layout.image(key)
        if not _store.exists(store, path):
            continue
        rescale = _store.read_attrs(store, path).get("medpipe", {}).get("rescale", {})
        reason = suv_not_computed(rescale)
        if reason is not None:
            out[key] = reason
    return out


def build_report(
    store: str,
    ctx: RunContext,
    *,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    n_thumbnails: int = 4,
) -> QAReport:
    """Compute a run's QA report (nothing is written).

    Parameters
    ----------
    store
        Store URL or path.
    ctx
        The run (:func:`run_context`, or the nightly flow's stage results).
    threshold
        PSI at or above which a feature is flagged.
    n_thumbnails
        Before/after thumbnails of at most this many new series.

    Returns
    -------
    QAReport
    """
    from medpipe.features.dataset import open_features
    from medpipe.report import quarantine_rows

    meta = _model_meta(store, ctx.model)
    group = _features_group(store, ctx, meta)
    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    drift: list[FeatureDrift] = []
    ranges: dict[str, tuple[float, float]] = {}
    reference = None
    source = None
    if group is not None and tables.has_table(store, group):
        table = open_features(store, group)
        source = str(table.attrs.get("source", layout.IMAGES))
        series = np.array([str(s) for s in table["series"].values])
        is_new = np.isin(series, list(ctx.new_series))
        ref_table, ref_mask, reference = _reference(store, table, ctx, meta)
        ref_names = {str(f) for f in ref_table["feature"].values}
        names = [str(f) for f in table["feature"].values if str(f) in ref_names]
        if is_new.any() and ref_mask.any() and names:
            cur = np.asarray(table["features"].sel(feature=names).values[is_new], dtype=float)
            ref = np.asarray(ref_table["features"].sel(feature=names).values[ref_mask], dtype=float)
            drift = drift_table(cur, ref, names, threshold=threshold)
            col = {n: j for j, n in enumerate(names)}
            shown = [d for d in drift if np.isfinite(d.psi)][:_PANELS]
            png, ranges = drift_png(
                [
                    (
                        d.feature,
                        cur[:, col[d.feature]],
                        ref[:, col[d.feature]],
                        f"PSI {d.psi:.2f}" + ("  FLAGGED" if d.flagged else ""),
                    )
                    for d in shown
                ]
            )
            figures["drift.png"] = png
            captions["drift.png"] = (
                f"the {len(shown)} features of largest PSI: this run's {int(is_new.sum())} "
                f"new samples against {reference}; ranges clipped to the 1-99 % quantiles"
            )
    for fname, png in _thumbnails(store, list(ctx.new_series)[:n_thumbnails], source).items():
        figures[fname] = png
        captions[fname] = ctx.new_series[int(fname[6:-4])]
    lines: list[str] = []
    brier = on = None
    if meta is not None:
        lines, mfig, mcap, brier, on = model_section(store, meta)
        figures.update(mfig)
        captions.update(mcap)
    reasons = Counter(str(r.get("reason")) for r in quarantine_rows(store))
    return QAReport(
        context=ctx,
        threshold=threshold,
        drift=tuple(drift),
        reference=reference,
        model=f"{meta['name']}:{meta['version']}" if meta else None,
        model_lines=tuple(lines),
        brier=brier,
        calibration_on=on,
        quarantine=dict(reasons.most_common()),
        suv_not_computed=_suv_not_computed(store, ctx.new_series),
        figures=figures,
        captions=captions,
        ranges=ranges,
    )


def write_qa_report(store: str, rep: QAReport) -> str:
    """Write ``reports/<run-id>/`` (replacing an older one at once) and return the page path.

    The folder holds ``index.html``, its PNG figures and :data:`MANIFEST`.
    """
    from medpipe.report.render import render

    ctx = rep.context
    manifest = {
        "context": {**asdict(ctx), "new_series": list(ctx.new_series)},
        "threshold": rep.threshold,
        "reference": rep.reference,
        "model": rep.model,
        "brier": rep.brier,
        "flagged": [asdict(d) for d in rep.flagged],
        "drift": [asdict(d) for d in rep.drift],
        "figures": sorted(rep.figures),
        "suv_not_computed": dict(rep.suv_not_computed),
        "phi_audit": rep.audit,
    }
    fs, _ = _store.store_root(store)
    with _store.atomic_group(store, layout.report(ctx.run_id)) as tmp:
        fs.makedirs(tmp, exist_ok=True)
        for fname, png in rep.figures.items():
            fs.pipe_file(f"{tmp}/{fname}", png)
        fs.pipe_file(f"{tmp}/index.html", render(rep).encode())
        fs.pipe_file(f"{tmp}/{MANIFEST}", json.dumps(manifest, indent=1, default=str).encode())
    return layout.report_page(ctx.run_id)
