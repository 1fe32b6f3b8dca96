"""Train, evaluate and score: the model stage on top of the feature tables.

* :func:`train_model` — join pseudonymised labels to a feature table, select the
  estimator and its hyperparameters by patient-grouped cross-validation on the
  training rows only, refit, and register the model with its nested-CV metrics
  (:mod:`medpipe.models.nested`: an outer loop that selection never saw).
* :func:`evaluate_model` — metrics with bootstrap CIs, ROC and confusion matrix of a
  registered model on a held-out split (never used for selection).
* :func:`score_model` — probabilities for every sample not yet scored by that model
  version, computed block-wise on the current Dask scheduler.

Labels may have k > 2 classes (:mod:`medpipe.models.labels`): every estimator then
trains a k-class classifier on the same patient-grouped stratified folds, the search
and the nested CV are scored by the macro one-vs-rest AUC, the soft vote averages the
class probabilities, and the decision is the most probable class (argmax; there is no
Youden threshold for k > 2).  ``model.json`` records ``classes`` (the class names of
codes ``0 .. k-1``, ``[0, 1]`` for binary labels) and ``decision``.

All three compute on the current Dask scheduler (the flows run them inside
:func:`flows._runner.on_cluster`).  Evaluation lives in :mod:`medpipe.models.evaluation`
and scoring in :mod:`medpipe.models.scoring`; both are importable from here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from medpipe.errors import ConfigError, ModelError
from medpipe.models import batch, cnn
from medpipe.models import estimators as est
from medpipe.models import labels as lab
from medpipe.models import metrics as met
from medpipe.models import multiclass as mc
from medpipe.models import registry as reg
from medpipe.models.calibration import calibration_summary, reliability_png
from medpipe.models.common import catalog_hash, library_versions
from medpipe.models.common import feature_table as _table
from medpipe.models.common import strings as _strings
from medpipe.models.domain import preprocess_record, training_domain
from medpipe.models.evaluation import check_compatible, evaluate_model
from medpipe.models.scoring import SCORES, open_scores, score_model, scores_group
from medpipe.progress import Report, steps
from medpipe.store import layout

__all__ = [
    "SCORES",
    "train_model",
    "train_steps",
    "training_matrix",
    "evaluate_model",
    "score_model",
    "check_compatible",
    "catalog_hash",
    "library_versions",
    "scores_group",
    "open_scores",
]

log = logging.getLogger(__name__)


def _groups(table: xr.Dataset) -> np.ndarray:
    """Patient key per sample (series key where the patient is unknown)."""
    patient = _strings(table["patient"])
    series = _strings(table["series_uid"]) if "series_uid" in table.coords else patient
    return np.where(patient != "", patient, series)


def _check_classes(classes: list, y: np.ndarray) -> None:
    """Every class of k > 2 must have training rows (a binary table may lack one: the
    folds say so)."""
    if len(classes) <= 2:
        return
    missing = [str(c) for i, c in enumerate(classes) if not (y == i).any()]
    if missing:
        raise ModelError(f"no training sample of class(es) {missing}; every one of the "
                         f"{len(classes)} classes {classes} needs training rows")


def _training_rows(table: xr.Dataset) -> tuple[np.ndarray, bool]:
    """Indices of the labelled 'train' rows (every labelled row without a split column)."""
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
    return np.flatnonzero(rows), has_split


def training_matrix(store: str, features: str, labels: pd.DataFrame
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The matrix :func:`train_model` selects on: its training rows, finite columns.

    Parameters
    ----------
    store
        Store URL or path.
    features
        Feature-table group.
    labels
        A pseudonymised label table (:func:`medpipe.models.labels.read_stored_labels`).

    Returns
    -------
    (x, y, groups, feature_names)
        Features, class codes, patient keys and the kept columns' names.
    """
    table = lab.join_labels(_table(store, features), labels)
    idx, _ = _training_rows(table)
    return _matrix(table, idx)


def _matrix(table: xr.Dataset, idx: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Rows ``idx`` of a labelled table: features (finite columns only), codes, patients."""
    # the training rows only ever enter memory here (small: samples x features)
    x = np.asarray(table["features"].isel(sample=idx).values, dtype=np.float64)
    finite = np.isfinite(x).all(axis=0)
    if not finite.any():
        raise ModelError("every feature has missing values on the training samples")
    names = [str(f) for f, keep in zip(table["feature"].values, finite, strict=True) if keep]
    return (x[:, finite], table["label"].values[idx].astype(int), _groups(table)[idx],
            names)


def train_steps(
    kinds: list[str], y: np.ndarray, groups: np.ndarray, *, vote: bool, large: bool | None,
    outer_folds: int, seed: int = 0,
) -> int:
    """Steps of :func:`train_model`'s progress: the unit that reflects its real work.

    One per grid search of an estimator kind (all its candidates x folds on the
    cluster) and one for the soft vote, in the selection and again in every outer fold
    of the nested CV; one per outer refit; one for the final refit; one for
    calibration and registration.
    """
    large = len(y) >= est.LARGE_SAMPLES if large is None else large
    gridded = sum(bool(est.param_grid(k, large=large)) for k in kinds)
    searches = len(kinds) + int(vote and not large and gridded >= 2)
    outer = 0
    if outer_folds >= 2:
        outer = len(est.grouped_folds(y, groups, n_splits=outer_folds, seed=seed))
    return searches * (1 + outer) + outer + 2


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
    outer_folds: int = 3,
    progress: Report | None = None,
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
        Patient-grouped stratified folds of the selection (the inner folds of the
        nested cross-validation).
    seed
        Seed of the folds and estimators.
    n_boot
        Bootstrap resamples for the confidence intervals.
    large
        Force (or forbid) the incremental SVM; default by sample count.
    label_source
        What to record as the labels' origin (default the label file's name).
    outer_folds
        Outer folds of the nested cross-validation that gives the reported CV metrics
        (:func:`medpipe.models.nested.nested_cv`; it repeats the whole selection in each
        outer fold, so training takes about ``outer_folds + 1`` times as long).  0
        skips it: the reported CV AUC is then the winner's selection score, which is
        optimistic, and ``model.json`` says ``"cv": {"method": "selection"}``.
    progress
        Reports ``train`` in steps (:func:`train_steps`): each grid search and the
        soft vote of the selection and of every outer fold, each outer refit, the
        final refit, and calibration with registration.

    Returns
    -------
    dict
        ``name``, ``version``, ``estimator``, ``cv_auc`` (the mean outer-fold AUC of
        the nested CV), ``cv_method``, ``selection_auc`` (the winner's score on its
        selection folds), ``metrics`` (pooled outer out-of-fold, with patient-level
        bootstrap CIs), ``n_train``.
    """
    reg.check_name(name)
    kinds = [est.get_estimator(k).name for k in (
        est.estimator_names() if estimator == "all" else [estimator])]
    if isinstance(labels, pd.DataFrame):
        table_labels, source_name = labels, label_source or "table"
    else:
        if secret is None:
            raise ConfigError("a secret is needed to pseudonymise the label keys")
        table_labels = lab.read_labels(labels, secret=secret)
        source_name = label_source or Path(labels).name
    labels_path = lab.write_labels(store, table_labels)
    table = lab.join_labels(_table(store, features), table_labels)
    idx, has_split = _training_rows(table)
    x, y, groups, feature_names = _matrix(table, idx)
    classes = lab.label_classes(table_labels)
    _check_classes(classes, y)
    # the CNN reads the pixels family's columns; without one, 'all' leaves it out
    kinds = cnn.usable_kinds(kinds, feature_names, explicit=estimator != "all",
                             n_samples=len(y))
    # fitted families (sift, orb) learn their vocabulary in each fit of these pipelines,
    # and the CNNs built here find their pixel columns and patient groups
    with est.pipeline_features(feature_names), mc.training_classes(len(classes)), \
            cnn.training_features(feature_names, x=x, groups=groups):
        folds = est.grouped_folds(y, groups, n_splits=n_splits, seed=seed)
        vote = estimator == "all"
        step = steps(progress, "train", train_steps(kinds, y, groups, vote=vote, large=large,
                                                    outer_folds=outer_folds, seed=seed))
        # the selection, its refit and the nested CV's selections and refits: two batches
        # of fold fits on the cluster (medpipe.models.batch)
        out = batch.run_selection(kinds, x, y, groups, folds=folds, outer_folds=outer_folds,
                                  inner_folds=n_splits, seed=seed, large=large, vote=vote,
                                  on_step=step)
        best, results, model, nres = out.best, out.results, out.model, out.nested
        oof = best.oof
        # the decision threshold is chosen on the training rows' out-of-fold probabilities
        # (Youden's J = max balanced accuracy), never on a held-out split; k > 2 classes:
        # none, the most probable class
        threshold = None if met.is_multiclass(oof) else met.youden_threshold(y, oof)
        selection_metrics = met.classification_metrics(
            y, oof, classes=classes, threshold=threshold, n_boot=n_boot, seed=seed,
            groups=groups)
        cv_info: dict[str, Any] = {"grouped_by": "patient", "stratified": True, "seed": seed}
        if nres is not None:
            eval_prob = nres.oof
            cv_metrics = met.classification_metrics(
                y, eval_prob, classes=classes, threshold=threshold, n_boot=n_boot, seed=seed,
                groups=groups)
            cv_auc = nres.mean_auc
            cv_info.update(method="nested", outer_folds=nres.outer_folds,
                           inner_folds=nres.inner_folds, n_splits=len(folds),
                           outer=[f.summary() for f in nres.folds])
        else:  # no outer loop: the selection score, named as such (optimistic)
            eval_prob, cv_metrics, cv_auc = oof, selection_metrics, best.best_score
            cv_info.update(method="selection", outer_folds=0, inner_folds=len(folds),
                           n_splits=len(folds))
    cv_info["auc"] = {"value": cv_auc, "ci_low": cv_metrics["auc"]["ci_low"],
                      "ci_high": cv_metrics["auc"]["ci_high"],
                      "ci": "cluster (patient) bootstrap of the pooled out-of-fold AUC"}
    cv_info["selection_auc"] = best.best_score
    attrs = table.attrs
    source = str(attrs.get("source", "images"))
    meta = {
        "estimator": best.kind,
        "best_params": best.best_params,
        "incremental": best.large,
        **({"threshold": threshold} if threshold is not None else {}),
        "classes": classes,
        "decision": "threshold" if threshold is not None else "argmax",
        "search": {
            r.kind: {"best_auc": r.best_score, "best_params": r.best_params,
                     "candidates": r.candidates}
            for r in results
        },
        "cv": cv_info,
        "selection_auc": best.best_score,
        "metrics": {"cv": cv_metrics, "selection": selection_metrics},
        "calibration": {"cv": calibration_summary(y, eval_prob, classes=classes)},
        "confusion": {"cv": met.confusion(y, eval_prob, threshold=threshold, classes=classes),
                      "selection": met.confusion(y, oof, threshold=threshold,
                                                 classes=classes)},
        "feature_names": feature_names,
        "features_group": features,
        "feature_config_hash": attrs.get("config_hash"),
        "feature_config": json.loads(attrs["config"]) if "config" in attrs else None,
        "source": source,
        "preprocessing_hash": layout.preprocessing_hash(source),
        # what `medpipe predict` needs to rebuild the stages and check a new input
        "preprocess_config": preprocess_record(store, source, _strings(table["series"])[idx]),
        "domain": training_domain(store, table.isel(sample=idx), source=source),
        "catalog_hash": catalog_hash(store),
        "labels": {
            "path": labels_path,
            "hash": lab.labels_hash(table_labels),
            "source": source_name,
            "key": str(table_labels["kind"].iloc[0]) if len(table_labels) else None,
            "split_used": "train" if has_split else "all",
            "n_train": int(len(y)),
            **({"n_positive": int(y.sum())} if threshold is not None else
               {"n_per_class": {str(c): int((y == i).sum()) for i, c in enumerate(classes)}}),
            "n_patients": int(len(np.unique(groups))),
        },
        "libraries": library_versions(),
    }
    cv_title = "nested CV" if outer_folds >= 2 else "selection CV"
    version = reg.save_model(
        store, name, model, meta,
        files={
            "roc_cv.png": met.roc_png(y, eval_prob, title=f"{name}: {cv_title} ROC",
                                      classes=classes),
            "calibration_cv.png": reliability_png(
                y, eval_prob, title=f"{name}: {cv_title} calibration", classes=classes),
        },
    )
    step.finish()  # calibration and registration
    return {
        "name": name,
        "version": version,
        "estimator": best.kind,
        "cv_auc": cv_auc,
        "cv_method": cv_info["method"],
        "selection_auc": best.best_score,
        "metrics": cv_metrics,
        "n_train": int(len(y)),
        "search": {r.kind: r.best_score for r in results},
    }
