"""Evaluate a registered model on a held-out split (metrics with patient-level CIs,
calibration), compare two models, and check a table fits a model.

A k-class model (``classes`` in its ``model.json`` has more than two names) is
evaluated with :func:`medpipe.models.metrics.multiclass_metrics`: macro and per-class
one-vs-rest AUC, accuracy, balanced accuracy and per-class sensitivity of the argmax
decision, with the k x k confusion matrix.  The two-model comparison (DeLong) is for
binary models only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medpipe.errors import ConfigError, ModelError, ModelMismatchError
from medpipe.models import compare as cmp
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import metrics as met
from medpipe.models import registry as reg
from medpipe.models.calibration import calibration_summary, reliability_png
from medpipe.models.common import catalog_hash, load_ref
from medpipe.models.common import feature_table as _table
from medpipe.models.common import strings as _strings

__all__ = ["check_compatible", "evaluate_model", "compare_models", "patient_groups"]

log = logging.getLogger(__name__)

#: Folder of a model version that holds its evaluation reports.
_REPORTS = "reports"


def check_compatible(meta: dict[str, Any], table: xr.Dataset) -> None:
    """Refuse a feature table that was not computed with the model's feature config.

    Raises
    ------
    ModelMismatchError
        Different feature-config hash, or feature names the model needs are missing.  A
        model from before the 16-digit hash matches a table of the same config by its old
        12-digit hash (:meth:`~medpipe.features.FeatureConfig.legacy_hash`).
    """
    ref = f"{meta.get('name')}:{meta.get('version')}"
    have = table.attrs.get("config_hash")
    want = meta.get("feature_config_hash")
    if want is not None and have != want and not _legacy_match(want, table):
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


def _legacy_match(want: str, table: xr.Dataset) -> bool:
    """A model trained before the 16-digit config hash: its 12-digit hash of the same config."""
    from medpipe.features import FeatureConfig

    config = table.attrs.get("config")
    if len(want) != 12 or not config:
        return False
    return FeatureConfig.model_validate_json(config).legacy_hash() == want


def patient_groups(table: xr.Dataset) -> np.ndarray:
    """Pseudonymous patient key per sample (the series key where the patient is unknown)."""
    patient = _strings(table["patient"])
    series = _strings(table["series_uid"]) if "series_uid" in table.coords else patient
    return np.where(patient != "", patient, series)


def _scored_split(
    store: str,
    model: str,
    split: str,
    labels: str | Path | None,
    secret: bytes | None,
    features: str | None,
) -> dict[str, Any]:
    """A model's P(class 1) (k classes: the ``(n, k)`` matrix) on the labelled, scorable
    samples of ``split``."""
    fitted, meta = load_ref(store, model)
    ref = f"{meta['name']}:{meta['version']}"
    table = _table(store, features or meta["features_group"])
    check_compatible(meta, table)
    if labels is not None:
        if secret is None:
            raise ConfigError("a secret is needed to pseudonymise the label keys")
        table_labels = lab.read_labels(labels, secret=secret, classes=meta.get("classes"))
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
    ok = np.isfinite(prob) if prob.ndim == 1 else np.isfinite(prob).all(axis=1)
    groups = patient_groups(table)[idx]
    keys = (_strings(table["series_uid"])[idx] if "series_uid" in table.coords
            else idx.astype(str))
    return {"meta": meta, "ref": ref, "label_source": label_source,
            "y": y_all[idx][ok].astype(int), "prob": prob[ok], "groups": groups[ok],
            "keys": keys[ok], "n_unscorable": int((~ok).sum())}


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
    """Metrics with 95% patient-level bootstrap CIs and calibration of a model on one split.

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
        Bootstrap settings (patients are resampled: a cluster bootstrap).

    Returns
    -------
    dict
        ``metrics`` (with ``brier``), ``calibration``
        (:func:`medpipe.models.calibration.calibration_summary`), ``confusion``,
        ``lines`` (printable), ``n``, and ``report`` / ``roc`` / ``reliability`` (paths
        of the files written into the model folder).
    """
    s = _scored_split(store, model, split, labels, secret, features)
    meta, ref, y, prob, groups = s["meta"], s["ref"], s["y"], s["prob"], s["groups"]
    if met.is_multiclass(prob):
        return _evaluate_multiclass(store, s, split, n_boot, seed)
    thr = float(meta.get("threshold", 0.5))
    metrics = met.binary_metrics(y, prob, threshold=thr, n_boot=n_boot, seed=seed, groups=groups)
    report = {
        "model": ref,
        "split": split,
        "labels": s["label_source"],
        "n": int(len(y)),
        "n_positive": int(y.sum()),
        "n_patients": int(len(np.unique(groups))),
        "n_unscorable": s["n_unscorable"],
        "metrics": metrics,
        "calibration": calibration_summary(y, prob),
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
    name, version = meta["name"], meta["version"]
    rep_path = reg.write_model_file(store, name, version, f"{_REPORTS}/{split}.json",
                                    json.dumps(report, indent=2).encode())
    png = met.roc_png(y, prob, title=f"{ref}: ROC on {split}") if len(set(y)) == 2 else b""
    roc_path = (
        reg.write_model_file(store, name, version, f"{_REPORTS}/roc_{split}.png", png)
        if png
        else None
    )
    rel_png = reliability_png(y, prob, title=f"{ref}: calibration on {split}")
    rel_path = reg.write_model_file(store, name, version,
                                    f"{_REPORTS}/calibration_{split}.png", rel_png)
    lines = [met.format_metric(k, metrics[k]) for k in (*met.METRICS, "brier")]
    return {**report, "lines": lines, "report": rep_path, "roc": roc_path, "roc_png": png,
            "reliability": rel_path, "reliability_png": rel_png}


def _evaluate_multiclass(store: str, s: dict[str, Any], split: str, n_boot: int,
                         seed: int) -> dict[str, Any]:
    """:func:`evaluate_model` of a k-class model (argmax decision, one-vs-rest AUCs)."""
    meta, ref, y, prob, groups = s["meta"], s["ref"], s["y"], s["prob"], s["groups"]
    classes = [str(c) for c in meta["classes"]]
    metrics = met.multiclass_metrics(y, prob, classes=classes, n_boot=n_boot, seed=seed,
                                     groups=groups)
    report = {
        "model": ref, "split": split, "labels": s["label_source"], "n": int(len(y)),
        "classes": classes, "decision": "argmax",
        "n_per_class": metrics["support"]["n_per_class"],
        "n_patients": int(len(np.unique(groups))), "n_unscorable": s["n_unscorable"],
        "metrics": metrics,
        "calibration": calibration_summary(y, prob, classes=classes),
        "confusion": met.confusion(y, prob, classes=classes),
        "catalog_hash": catalog_hash(store),
    }
    absent = [c for i, c in enumerate(classes) if not (y == i).any()]
    if absent:
        report["note"] = (
            f"no labelled {split} sample of class(es) {absent}: their one-vs-rest AUC and "
            "sensitivity, and the macro AUC, are undefined (nan)")
        log.warning("%s: %s", ref, report["note"])
    name, version = meta["name"], meta["version"]
    rep_path = reg.write_model_file(store, name, version, f"{_REPORTS}/{split}.json",
                                    json.dumps(report, indent=2).encode())
    png = met.roc_png(y, prob, title=f"{ref}: one-vs-rest ROC on {split}", classes=classes)
    roc_path = reg.write_model_file(store, name, version, f"{_REPORTS}/roc_{split}.png", png)
    rel_png = reliability_png(y, prob, title=f"{ref}: calibration on {split}",
                              classes=classes)
    rel_path = reg.write_model_file(store, name, version,
                                    f"{_REPORTS}/calibration_{split}.png", rel_png)
    lines = [met.format_metric(k, metrics[k]) for k in (*met.metric_keys(metrics), "brier")]
    return {**report, "lines": lines, "report": rep_path, "roc": roc_path, "roc_png": png,
            "reliability": rel_path, "reliability_png": rel_png}


def compare_models(
    store: str,
    *,
    model_a: str,
    model_b: str,
    split: str = "val",
    labels: str | Path | None = None,
    secret: bytes | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two registered models' AUCs on the same samples of one split.

    The samples both models can score (matched by pseudonymous series key) are
    compared with DeLong's test and a paired patient-level bootstrap
    (:func:`medpipe.models.compare.compare_aucs`).  The report is written into model
    A's folder (``reports/compare_<split>_<B>.json``).

    Returns
    -------
    dict
        ``model_a``, ``model_b``, ``split``, ``auc_a``, ``auc_b``, ``delong``,
        ``bootstrap``, ``n``, ``n_positive``, ``n_patients``, ``lines``, ``report``.
    """
    a = _scored_split(store, model_a, split, labels, secret, None)
    b = _scored_split(store, model_b, split, labels, secret, None)
    multi = [m["ref"] for m in (a, b) if met.is_multiclass(m["prob"])]
    if multi:
        raise ModelError(f"comparing AUCs (DeLong, paired bootstrap) is for binary models; "
                         f"{', '.join(multi)} has k > 2 classes")
    common, ia, ib = np.intersect1d(a["keys"], b["keys"], return_indices=True)
    if common.size == 0:
        raise ModelError(f"{a['ref']} and {b['ref']} score no common sample of split {split!r}")
    y = a["y"][ia]
    if not np.array_equal(y, b["y"][ib]):
        raise ModelError(f"{a['ref']} and {b['ref']} see different labels for the same samples; "
                         "pass --labels to use one label file for both")
    res = cmp.compare_aucs(y, a["prob"][ia], b["prob"][ib], groups=a["groups"][ia],
                           n_boot=n_boot, seed=seed)
    d, bs = res["delong"], res["bootstrap"]
    out = {"model_a": a["ref"], "model_b": b["ref"], "split": split,
           "auc_a": d["auc_a"], "auc_b": d["auc_b"], **res}
    lines = [
        f"{a['ref']}: AUC {d['auc_a']:.3f}",
        f"{b['ref']}: AUC {d['auc_b']:.3f}",
        f"difference (A - B) {d['diff']:+.3f} (95% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}),"
        f" DeLong p = {d['p_value']:.3g}",
        f"paired bootstrap over {bs['resampled']}: 95% CI {bs['ci_low']:+.3f} to "
        f"{bs['ci_high']:+.3f}, p = {bs['p_value']:.3g}",
    ]
    meta = a["meta"]
    other = b["ref"].replace(":", "-")
    out["report"] = reg.write_model_file(
        store, meta["name"], meta["version"], f"{_REPORTS}/compare_{split}_{other}.json",
        json.dumps(out, indent=2).encode())
    return {**out, "lines": lines}
