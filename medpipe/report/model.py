"""The current model's part of the QA report: metrics, ROC files, calibration."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from medpipe.report.figures import calibration_png

__all__ = ["model_section"]



def model_section(
    store: str, meta: dict[str, Any]
) -> tuple[list[str], dict[str, bytes], dict[str, str], float | None, str | None]:
    """Metric lines, figures (ROC from the model folder, reliability diagram), captions,
    the Brier score and the rows it was computed on, of a model version.

    Calibration uses the version's score table with the model's stored labels: the
    held-out rows (``val``/``test``) when there are some, else the labelled rows (then
    said to be in-sample).  ``brier`` is ``None`` without scores or with one class.
    """
    from sklearn.metrics import brier_score_loss

    from medpipe.models import labels as lab
    from medpipe.models import registry as reg
    from medpipe.models.metrics import format_metric, metric_keys
    from medpipe.models.scoring import open_scores, scores_group

    name, version = meta["name"], meta["version"]
    cv = meta.get("metrics", {}).get("cv", {})
    lines = [f"cross-validation: {format_metric(k, cv[k])}" for k in metric_keys(cv)]
    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for fname, out, caption in (
        ("roc_cv.png", "roc-cv.png", "ROC, patient-grouped cross-validation (training rows)"),
        ("reports/roc_val.png", "roc-val.png", "ROC on the validation split"),
    ):
        try:
            figures[out] = reg.read_model_file(store, name, version, fname)
            captions[out] = caption
        except (FileNotFoundError, OSError):
            pass
    try:
        val = json.loads(reg.read_model_file(store, name, version, "reports/val.json"))
        lines += [f"val: {format_metric(k, val['metrics'][k])}"
                  for k in metric_keys(val["metrics"])]
    except (FileNotFoundError, OSError, KeyError, ValueError):
        pass
    scores = open_scores(store, scores_group(name, version))
    if scores is None:
        return lines, figures, captions, None, None
    joined = lab.join_labels(scores, lab.read_stored_labels(store, meta["labels"]["path"]))
    y = joined["label"].values
    p = np.asarray(joined["probability"].values, dtype=float)
    split = np.array([str(s) for s in joined["split"].values])
    ok = np.isfinite(y) & (np.isfinite(p) if p.ndim == 1 else np.isfinite(p).all(axis=1))
    held = ok & np.isin(split, ["val", "test"])
    rows, on = (held, "held-out rows (val/test)") if held.any() else (
        ok, "labelled rows it was trained on (in-sample, optimistic)")
    if rows.sum() < 2 or len(np.unique(y[rows])) < 2:
        return lines, figures, captions, None, None
    yy, pp = y[rows].astype(int), p[rows]
    on = f"{int(rows.sum())} {on}"
    if pp.ndim == 2:  # k > 2 classes: multi-class Brier, one-vs-rest curves
        from medpipe.models.calibration import calibration_summary, reliability_png

        brier = float(calibration_summary(yy, pp)["brier"])
        figures["calibration.png"] = reliability_png(
            yy, pp, title=f"{name}:{version} calibration", classes=meta.get("classes"))
    else:
        brier = float(brier_score_loss(yy, pp))
        figures["calibration.png"] = calibration_png(yy, pp,
                                                     title=f"{name}:{version} calibration")
    captions["calibration.png"] = f"reliability diagram on {on}; Brier score {brier:.3f}"
    lines.append(f"Brier score {brier:.3f} on {on}")
    return lines, figures, captions, brier, on
