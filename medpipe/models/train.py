"""Train, evaluate and score: the model stage on top of the feature tables.

* :func:`train_model` — join pseudonymised labels to a feature table, select the
  estimator and its hyperparameters by patient-grouped cross-validation on the
  training rows only, refit, and register the model with its CV metrics.
* :func:`evaluate_model` — metrics with bootstrap CIs, ROC and confusion matrix of a
  registered model on a held-out split (never used for selection).
* :func:`score_model` — probabilities for every sample not yet scored by that model
  version, computed block-wise on the current Dask scheduler.

All three compute on the current Dask scheduler (the flows run them inside
:func:`flows._runner.on_cluster`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from medpipe import catalog
from medpipe import store as _store
from medpipe.errors import ConfigError, ModelError, ModelMismatchError
from medpipe.features.dataset import open_features
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import metrics as met
from medpipe.models import registry as reg

__all__ = [
    "SCORES",
    "train_model",
    "evaluate_model",
    "score_model",
    "check_compatible",
    "catalog_hash",
    "library_versions",
    "scores_group",
    "open_scores",
]

log = logging.getLogger(__name__)

#: Store group of the scores: ``scores/<name>/<version>``.
SCORES = "scores"


def catalog_hash(store: str) -> str:
    """Digest of the catalog's current view (path, content hash, series, status)."""
    cur = catalog.current(store)
    if cur.empty:
        return hashlib.sha256(b"").hexdigest()[:16]
    rows = cur[["path", "sha256", "series", "status"]].astype(str).reset_index(drop=True)
    rows = rows.sort_values("path")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("medpipe", "numpy", "scikit-learn", "dask", "dask-ml", "xarray", "skops"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


def _table(store: str, group: str) -> xr.Dataset:
    fs, root = _store.store_root(store)
    if not fs.exists(f"{root}/{group}/zarr.json"):
        raise ConfigError(f"no feature table {group!r} in store {store!r}; run medpipe features")
    return open_features(store, group)


def _strings(a: xr.DataArray) -> np.ndarray:
    return np.array([str(v) for v in a.values], dtype=object)


def _groups(table: xr.Dataset) -> np.ndarray:
    """Patient key per sample (series key where the patient is unknown)."""
    patient = _strings(table["patient"])
    series = _strings(table["series_uid"]) if "series_uid" in table.coords else patient
    return np.where(patient != "", patient, series)


def _preprocessing_hash(source: str) -> str | None:
    return source.rsplit("/", 1)[-1] if source.startswith("preprocessed/") else None


def train_model(
    store: str,
    *,
    name: str,
    features: str,
    labels: str | Path | pd.DataFrame,
    secret: bytes | None = None,
    estimator: str = "all",
    n_splits: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    large: bool | None = None,
    label_source: str | None = None,
) -> dict[str, Any]:
    """Select, fit and register a classifier.

    Parameters
    ----------
    store
        Store URL or path.
    name
        Model name (``models/<name>/<version>``).
    features
        Feature-table group (``features/<cfg-hash>``).
    labels
        A label file (CSV/Parquet, keyed by SeriesInstanceUID, StudyInstanceUID or
        PatientID; see :func:`medpipe.models.labels.read_labels`) or an already
        pseudonymised label table.  The pseudonymised table is recorded in the store.
    secret
        Pseudonymisation secret (needed for a label file).
    estimator
        ``svm``, ``logreg``, ``rf`` or ``all`` (each searched, plus the soft vote of the
        tuned three scored on the same folds; the best CV AUC wins).
    n_splits
        Patient-grouped stratified folds.
    seed
        Seed of the folds and estimators.
    n_boot
        Bootstrap resamples for the confidence intervals.
    large
        Force (or forbid) the incremental SVM; default by sample count.
    label_source
        What to record as the labels' origin (default the label file's name).

    Returns
    -------
    dict
        ``name``, ``version``, ``estimator``, ``cv_auc``, ``metrics`` (out-of-fold,
        with CIs), ``n_train``.
    """
    reg.check_name(name)
    kinds = list(est.ESTIMATORS) if estimator == "all" else [estimator]
    for k in kinds:
        if k not in est.ESTIMATORS:
            raise ConfigError(f"unknown estimator {k!r}; use one of {list(est.ESTIMATORS)} or all")
    if isinstance(labels, pd.DataFrame):
        table_labels, source_name = labels, label_source or "table"
    else:
        if secret is None:
            raise ConfigError("a secret is needed to pseudonymise the label keys")
        table_labels = lab.read_labels(labels, secret=secret)
        source_name = label_source or Path(labels).name
    labels_path = lab.write_labels(store, table_labels)
    table = lab.join_labels(_table(store, features), table_labels)
    y_all = table["label"].values
    split = _strings(table["split"])
    known = np.isfinite(y_all)
    has_split = bool((split[known] != "").any())
    rows = known & (split == "train") if has_split else known
    if rows.sum() == 0:
        raise ModelError(
            f"no labelled training samples: {int(known.sum())} samples matched the labels"
            + (" but none is in split 'train'" if has_split else "")
        )
    idx = np.flatnonzero(rows)
    # the training rows only ever enter memory here (small: samples x features)
    x = np.asarray(table["features"].isel(sample=idx).values, dtype=np.float64)
    y = y_all[idx].astype(int)
    groups = _groups(table)[idx]
    names_all = [str(f) for f in table["feature"].values]
    finite = np.isfinite(x).all(axis=0)
    if not finite.any():
        raise ModelError("every feature has missing values on the training samples")
    x = x[:, finite]
    feature_names = [n for n, keep in zip(names_all, finite, strict=True) if keep]
    folds = est.grouped_folds(y, groups, n_splits=n_splits, seed=seed)
    results = []
    for k in kinds:
        log.info("grid search %s on %d samples x %d features", k, *x.shape)
        results.append(est.search(k, x, y, groups, folds=folds, random_state=seed, large=large))
    if estimator == "all" and sum(not r.large for r in results) >= 2:
        log.info("soft vote of %s on the same folds", ", ".join(r.kind for r in results))
        results.append(est.ensemble_result(results, x, y, folds=folds, random_state=seed))
    best = max(results, key=lambda r: r.best_score)
    model = est.fit_final(best, x, y, random_state=seed)
    oof = best.oof
    if oof is None:
        oof = est.out_of_fold(best.pipeline(random_state=seed), x, y, folds=folds)
    # the decision threshold is chosen on the training rows' out-of-fold probabilities
    # (Youden's J = max balanced accuracy), never on a held-out split
    threshold = met.youden_threshold(y, oof)
    cv_metrics = met.binary_metrics(y, oof, threshold=threshold, n_boot=n_boot, seed=seed)
    attrs = table.attrs
    source = str(attrs.get("source", "images"))
    meta = {
        "estimator": best.kind,
        "best_params": best.best_params,
        "incremental": best.large,
        "threshold": threshold,
        "search": {
            r.kind: {"best_auc": r.best_score, "best_params": r.best_params,
                     "candidates": r.candidates}
            for r in results
        },
        "cv": {"n_splits": len(folds), "grouped_by": "patient", "stratified": True,
               "seed": seed},
        "metrics": {"cv": cv_metrics},
        "confusion": {"cv": met.confusion(y, oof, threshold=threshold)},
        "feature_names": feature_names,
        "features_group": features,
        "feature_config_hash": attrs.get("config_hash"),
        "feature_config": json.loads(attrs["config"]) if "config" in attrs else None,
        "source": source,
        "preprocessing_hash": _preprocessing_hash(source),
        "catalog_hash": catalog_hash(store),
        "labels": {
            "path": labels_path,
            "hash": lab.labels_hash(table_labels),
            "source": source_name,
            "key": str(table_labels["kind"].iloc[0]) if len(table_labels) else None,
            "split_used": "train" if has_split else "all",
            "n_train": int(len(y)),
            "n_positive": int(y.sum()),
            "n_patients": int(len(np.unique(groups))),
        },
        "libraries": library_versions(),
    }
    version = reg.save_model(
        store, name, model, meta,
        files={"roc_cv.png": met.roc_png(y, oof, title=f"{name}: cross-validation ROC")},
    )
    return {
        "name": name,
        "version": version,
        "estimator": best.kind,
        "cv_auc": best.best_score,
        "metrics": cv_metrics,
        "n_train": int(len(y)),
        "search": {r.kind: r.best_score for r in results},
    }


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


def _load(store: str, model: str) -> tuple[Any, dict[str, Any]]:
    name, version = reg.parse_model_ref(model)
    return reg.load_model(store, name, version)


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
    fitted, meta = _load(store, model)
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
        store, meta["name"], meta["version"], f"reports/{split}.json",
        json.dumps(report, indent=2).encode(),
    )
    png = met.roc_png(y, prob, title=f"{ref}: ROC on {split}") if len(set(y)) == 2 else b""
    roc_path = (
        reg.write_model_file(store, meta["name"], meta["version"], f"reports/roc_{split}.png",
                             png)
        if png
        else None
    )
    lines = [met.format_metric(k, metrics[k]) for k in met.METRICS]
    return {**report, "lines": lines, "report": rep_path, "roc": roc_path, "roc_png": png}


def scores_group(name: str, version: str) -> str:
    """``scores/<name>/<version>``."""
    return f"{SCORES}/{reg.check_name(name)}/{version}"


def open_scores(store: str, group: str) -> xr.Dataset | None:
    """A stored score table, or ``None``."""
    fs, root = _store.store_root(store)
    if not fs.exists(f"{root}/{group}/zarr.json"):
        return None
    return xr.open_zarr(fs.get_mapper(f"{root}/{group}"), consolidated=False)


def score_model(
    store: str, *, model: str, features: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Score every sample that has features and no score yet for this model version.

    Probabilities are computed block-wise on the current Dask scheduler (a lazy
    ``map_blocks`` over the feature array, as :class:`~dask_ml.wrappers.ParallelPostFit`
    does) in the write of ``scores/<name>/<version>``: variables ``probability``
    (float, NaN where a needed feature is missing) and ``predicted`` (0/1, -1 when
    unscorable), coords ``sample``, ``series``, ``series_uid``, ``study``, ``patient``.

    Returns
    -------
    dict
        ``group``, ``scored`` (new this run), ``total``.
    """
    fitted, meta = _load(store, model)
    group = scores_group(meta["name"], meta["version"])
    table = _table(store, features or meta["features_group"])
    check_compatible(meta, table)
    old = open_scores(store, group)
    done = set() if old is None else set(_strings(old["sample"]))
    samples = _strings(table["sample"])
    todo = [i for i, s in enumerate(samples) if s not in done]
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return {"group": group, "scored": 0, "total": len(done)}
    sub = table.isel(sample=todo).sel(feature=meta["feature_names"])
    prob = est.positive_proba(fitted, sub["features"].data)
    thr = float(meta.get("threshold", 0.5))
    import dask.array as da

    pred = da.where(da.isnan(prob), -1, (prob >= thr).astype(np.int8)).astype(np.int8)
    coords = {
        c: ("sample", _strings(sub[c]).astype(str))
        for c in ("series", "series_uid", "study", "patient")
        if c in sub.coords
    }
    new = xr.Dataset(
        {"probability": ("sample", prob), "predicted": ("sample", pred)},
        coords={"sample": _strings(sub["sample"]).astype(str), **coords},
        attrs={"model": meta["name"], "version": meta["version"], "threshold": thr,
               "features_group": meta["features_group"]},
    )
    out = new if old is None else xr.concat([old.load(), new], dim="sample")
    rows = min(max(out.sizes["sample"], 1), 65_536)
    out = out.assign(
        probability=out["probability"].chunk({"sample": rows}),
        predicted=out["predicted"].chunk({"sample": rows}),
    )
    for c in out.coords:  # fixed-width strings (object arrays cannot be encoded)
        if out[c].dtype == object:
            out = out.assign_coords({c: out[c].astype(str)})
    with _store.atomic_group(store, group) as tmp:
        out.to_zarr(tmp, mode="w", consolidated=False, zarr_format=3)
    return {"group": group, "scored": len(todo), "total": int(out.sizes["sample"])}


