"""Classifiers on feature tables: labels, dask-ml estimators, metrics, model registry.

See :mod:`medpipe.models.train` for the stage functions (:func:`train_model`,
:func:`evaluate_model`, :func:`score_model`).
"""

from medpipe.models.labels import join_labels, read_labels, read_stored_labels, write_labels
from medpipe.models.metrics import binary_metrics, confusion, format_metric, roc_png
from medpipe.models.registry import (
    TRUSTED_TYPES,
    list_models,
    load_model,
    parse_model_ref,
    read_model_json,
    save_model,
)
from medpipe.models.train import check_compatible, evaluate_model, score_model, train_model

__all__ = [
    "TRUSTED_TYPES",
    "binary_metrics",
    "check_compatible",
    "confusion",
    "evaluate_model",
    "format_metric",
    "join_labels",
    "list_models",
    "load_model",
    "parse_model_ref",
    "read_labels",
    "read_model_json",
    "read_stored_labels",
    "roc_png",
    "save_model",
    "score_model",
    "train_model",
    "write_labels",
]
