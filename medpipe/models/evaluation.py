"""Evaluate a registered model on a held-out split, and check a table fits a model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medpipe.errors import ConfigError, ModelError, ModelMismatchError
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import metrics as met
from medpipe.models import registry as reg
from medpipe.models.common import catalog_hash, load_ref
from medpipe.models.common import feature_table as _table
from medpipe.models.common import strings as _strings

__all__ = ["check_compatible", "evaluate_model"]

log = logging.getLogger(__name__)

#: Folder of a model version that holds its evaluation reports.
_REPORTS = "reports"


def check_compatible(meta: dict[str, Any], table: xr.Dataset) -> None:
    """Refuse a feature table that was not computed with the model's feature config.

    Raises
    ------
    ModelMismatchError
        Different feature-config hash, or feature names the model needs are missing.
    """
    ref = f"{meta.get('name')}:{meta.get('version')}"
    have = table.attrs.get("config_hash")
    want = meta.get("feature_config_hash")
    if want is not None and have != want:
        raise ModelMismatchError(
            f"model {ref} was trained on features with config {want} "
            f"({meta.get('features_group')}), but these features have config {have}; "
            f"compute features with the model's config (medpipe models show {ref}) "
            "or train a model on these features"
        )
    missing = sorted(set(meta["feature_names"]) - {str(f) for f in table["feature"].values})
    if missing:
        raise ModelMismatchError(
            f"model {ref} needs {len(missing)} feature(s) this table lacks, e.g. {missing[:3]}"
        )


def evaluate_model(
    store: str,
    *,
    model: str,
    split: str = "val",
    labels: str | Path | None = None,
    secret: bytes | None = None,
    features: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics with 95% bootstrap CIs of a registered model on one split.

    Parameters
    ----------
    store
        Store URL or path.
    model
        ``NAME`` or ``NAME:VERSION``.
    split
        ``val`` or ``test`` (``train`` is allowed but is not a held-out estimate).
    labels
        A label file; default the labels recorded at training time.
    secret
        Pseudonymisation secret (needed with ``labels``).
    features
        Feature-table group; default the model's.
    n_boot, seed
        Bootstrap settings.

    Returns
    -------
    dict
        ``metrics``, ``confusion``, ``lines`` (printable), ``n``, and ``report`` /
        ``roc`` (paths of the files written into the model folder).
    """
    fitted, meta = load_ref(store, model)
    ref = f"{meta['name']}:{meta['version']}"
    table = _table(store, features or meta["features_group"])
    check_compatible(meta, table)
    if labels is not None:
        if secret is None:
            raise ConfigError("a secret is needed to pseudonymise the label keys")
        table_labels = lab.read_labels(labels, secret=secret)
        label_source = Path(labels).name
    else:
        table_labels = lab.read_stored_labels(store, meta["labels"]["path"])
        label_source = meta["labels"]["path"]
    table = lab.join_labels(table, table_labels)
    y_all = table["label"].values
    rows = np.isfinite(y_all) & (_strings(table["split"]) == split)
    if not rows.any():
        raise ModelError(f"no labelled samples in split {split!r} for model {ref}")
    idx = np.flatnonzero(rows)
    x = table["features"].isel(sample=idx).sel(feature=meta["feature_names"]).values
    prob = np.asarray(est.positive_proba(fitted, x))
    ok = np.isfinite(prob)
    y = y_all[idx][ok].astype(int)
    prob = prob[ok]
    thr = float(meta.get("threshold", 0.5))
    metrics = met.binary_metrics(y, prob, threshold=thr, n_boot=n_boot, seed=seed)
    report = {
        "model": ref,
        "split": split,
        "labels": label_source,
        "n": int(len(y)),
        "n_positive": int(y.sum()),
        "n_unscorable": int((~ok).sum()),
        "metrics": metrics,
        "confusion": met.confusion(y, prob, threshold=thr),
        "catalog_hash": catalog_hash(store),
    }
    if len(set(y)) < 2:
        report["note"] = (
            f"only one class among the {len(y)} labelled {split} samples "
            f"({int(y.sum())} positive): AUC, specificity or sensitivity and the balanced "
            "accuracy are undefined (nan) and no ROC is drawn"
        )
        log.warning("%s: %s", ref, report["note"])
    rep_path = reg.write_model_file(
        store, meta["name"], meta["version"], f"{_REPORTS}/{split}.json",
        json.dumps(report, indent=2).encode(),
    )
    png = met.roc_png(y, prob, title=f"{ref}: ROC on {split}") if len(set(y)) == 2 else b""
    roc_path = (
        reg.write_model_file(store, meta["name"], meta["version"], f"{_REPORTS}/roc_{split}.png",
                             png)
        if png
        else None
    )
    lines = [met.format_metric(k, metrics[k]) for k in met.METRICS]
    return {**report, "lines": lines, "report": rep_path, "roc": roc_path, "roc_png": png}

