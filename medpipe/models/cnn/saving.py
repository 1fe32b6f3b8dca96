"""Saving and loading CNN models: ``model.keras`` beside ``model.json``.

A ``.keras`` file is a zip archive of ``config.json`` (the layer graph), the weights and
``metadata.json``.  Loading is refused with :class:`~medpipe.errors.ModelError`, before
Keras builds anything, when the file is not such an archive or its config names a
``Lambda`` layer (serialised Python code) or any class outside
:data:`~medpipe.models.cnn.network.LAYERS` and the Keras modules; it is then built by
``keras.saving.load_model(..., safe_mode=True)``, which by itself refuses to deserialise
Python code.  The registry records and checks the file's SHA-256 as for skops models.

A registered CNN model is the Keras file plus the classifier's parameters and classes
in ``model.json`` (``"cnn"``): :func:`dump_model` and :func:`load_model_bytes` are the
registry's two hooks.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dask_ml.wrappers import ParallelPostFit
from sklearn.pipeline import Pipeline

from medpipe.errors import ModelError, UntrustedModelError
from medpipe.models.cnn.backend import keras
from medpipe.models.cnn.classifier import CNNClassifier

__all__ = ["MODEL_FILE", "CNNFile", "dump_model", "keras_bytes", "load_keras_bytes",
           "load_model_bytes", "check_keras_archive", "find_cnn"]

#: File name of a registered CNN model in its version folder.
MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class CNNFile:
    """What the registry writes for a CNN model: the ``.keras`` bytes and ``model.json``'s
    ``"cnn"`` section."""

    data: bytes
    info: dict[str, Any]


def keras_bytes(model: Any) -> bytes:
    """The ``.keras`` archive of a Keras model, as bytes."""
    with tempfile.TemporaryDirectory(prefix="medpipe-keras-") as tmp:
        path = Path(tmp) / MODEL_FILE
        model.save(path)
        return path.read_bytes()


def _walk_classes(node: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        if "class_name" in node:
            out.append((str(node.get("module") or ""), str(node["class_name"])))
        for v in node.values():
            _walk_classes(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk_classes(v, out)


def check_keras_archive(data: bytes, *, where: str) -> None:
    """Refuse a ``.keras`` archive medpipe would not have written.

    Raises
    ------
    UntrustedModelError
        Its config has a ``Lambda`` layer or a class outside the trusted layer list.
    ModelError
        It is not a ``.keras`` zip archive with a ``config.json``.
    """
    from medpipe.models.cnn.network import LAYERS

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise ModelError(f"{where} is not a readable .keras archive: {err}") from None
    classes: list[tuple[str, str]] = []
    _walk_classes(config, classes)
    if any(c == "Lambda" for _, c in classes):
        raise UntrustedModelError(
            f"{where} contains a Lambda layer (serialised Python code); refusing to load "
            "it: medpipe's CNN has none, so the file was not written by medpipe or has "
            "been altered"
        )
    layers = config.get("config", {}).get("layers", []) if isinstance(config, dict) else []
    foreign = sorted({n.get("class_name", "?") for n in layers if isinstance(n, dict)}
                     - LAYERS)
    foreign += sorted({f"{m}.{c}" for m, c in classes
                       if m and not m.startswith("keras")})
    if foreign:
        raise UntrustedModelError(
            f"{where} contains layers or classes outside medpipe's CNN: {foreign}; "
            "refusing to load it"
        )


def load_keras_bytes(data: bytes, *, where: str) -> Any:
    """Build the Keras model of checked ``.keras`` bytes (``safe_mode=True``)."""
    check_keras_archive(data, where=where)
    k = keras()
    with tempfile.TemporaryDirectory(prefix="medpipe-keras-") as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(data)
        try:
            return k.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as err:  # noqa: BLE001 - any load failure is a model error
            raise ModelError(f"{where} cannot be loaded by Keras: {err}") from None


def find_cnn(model: Any) -> CNNClassifier | None:
    """The :class:`CNNClassifier` a fitted model ends with (``None`` for other models)."""
    est = model.estimator if isinstance(model, ParallelPostFit) else model
    if isinstance(est, CNNClassifier):
        return est
    if isinstance(est, Pipeline) and isinstance(est[-1], CNNClassifier):
        extra = [n for n, s in est.steps[:-1] if s not in (None, "passthrough")]
        if extra:
            raise ModelError(f"a CNN pipeline is saved without other steps; it has {extra}")
        return est[-1]
    members = getattr(est, "estimators_", None) or []
    if any(find_cnn(m) is not None for m in members if isinstance(m, Pipeline)):
        raise ModelError("a soft vote with a CNN member cannot be saved")
    return None


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(e) for e in v]
    return v.item() if isinstance(v, np.generic) else v


def dump_model(model: Any) -> CNNFile | None:
    """The registry's save hook: ``None`` for a non-CNN model (saved with skops)."""
    clf = find_cnn(model)
    if clf is None:
        return None
    info = {
        "params": {k: _plain(v) for k, v in clf.get_params().items() if k != "row_groups"},
        "classes": [_plain(c) for c in clf.classes_],
        "n_features_in": int(clf.n_features_in_),
        "epochs_run": int(clf.epochs_run_),
        "keras": keras().__version__,
        "backend": keras().backend.backend(),
    }
    return CNNFile(keras_bytes(clf.model_), info)


def load_model_bytes(data: bytes, info: dict[str, Any] | None, *, where: str) -> Any:
    """The registry's load hook: the fitted model (as ``train`` registered it).

    Raises
    ------
    ModelError
        ``model.json`` has no ``"cnn"`` section, or the file is refused or unreadable
        (:func:`load_keras_bytes`).
    """
    if not info or "params" not in info or "classes" not in info:
        raise ModelError(f"{where}: model.json has no 'cnn' section; cannot rebuild the model")
    params = dict(info["params"])
    if params.get("columns") is not None:
        params["columns"] = tuple(int(c) for c in params["columns"])
    clf = CNNClassifier(**params)
    clf.model_ = load_keras_bytes(data, where=where)
    clf.classes_ = np.asarray(info["classes"])
    clf.n_features_in_ = int(info["n_features_in"])
    clf.epochs_run_ = int(info.get("epochs_run", 0))
    return ParallelPostFit(estimator=Pipeline([("clf", clf)]))
