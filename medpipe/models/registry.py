"""The model registry: ``models/<name>/<version>/`` with a skops pipeline and model.json.

Models are saved with :mod:`skops.io`, whose loader rebuilds objects from a list of
types instead of unpickling, and here is only ever given :data:`TRUSTED_TYPES` — an
explicit list of the scikit-learn / dask-ml / NumPy types our pipelines are made of.
A file naming any other type (a tampered or foreign model) is refused with
:class:`~medpipe.errors.UntrustedModelError` before anything is built, and
``model.json`` records the SHA-256 of the model file, which loading checks.  A CNN model
is a ``model.keras`` file instead, checked and loaded with ``safe_mode=True`` by
:mod:`medpipe.models.cnn.saving`.

Writers of ``models/``, ``scores/`` and ``labels/`` hold :func:`registry_lock` (the
store lock ``locks/models.lock``, waited for) while they write; a version is created
under it with "no overwrite", so two concurrent trainings get two versions.  Readers
do not lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import skops.io as sio

from medpipe import store as _store
from medpipe.errors import ModelError, StoreLockedError, UntrustedModelError
from medpipe.models.cnn import saving as cnn_saving
from medpipe.store import layout, store_lock

log = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "TRUSTED_TYPES",
    "parse_model_ref",
    "list_models",
    "list_versions",
    "next_version",
    "save_model",
    "load_model",
    "read_model_json",
    "write_model_file",
    "read_model_file",
    "model_path",
    "registry_lock",
    "REGISTRY_LOCK",
]

#: Name of the store lock held by every writer of ``models/``, ``scores/``, ``labels/``.
REGISTRY_LOCK = "models"

#: Store group of the registry.
MODELS = layout.MODELS
_PIPELINE = "pipeline.skops"
_META = "model.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Every type a medpipe pipeline may contain; nothing else is ever loaded.
TRUSTED_TYPES: tuple[str, ...] = (
    "dask_ml.wrappers.ParallelPostFit",
    "dask_ml.wrappers.Incremental",
    "dask_ml.preprocessing.data.StandardScaler",
    "medpipe.models.estimators.StandardScaler",
    "medpipe.models.estimators.SoftVote",
    "medpipe.features.visualwords.BagOfVisualWords",
    "dask_ml.linear_model.glm.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegression",  # k > 2 classes (multinomial)
    "sklearn.pipeline.Pipeline",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.bool_",
    "numpy.random._generator.Generator",
    "numpy.random._pcg64.PCG64",
    "numpy.random.mtrand.RandomState",
    "builtins.slice",
    "collections.OrderedDict",
)


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:VERSION`` → ``(name, version or None)``."""
    name, _, version = ref.partition(":")
    check_name(name)
    return name, (version or None)


def check_name(name: str) -> str:
    """A model name is 1-64 letters, digits, ``_ . -`` (it becomes a path)."""
    if not _NAME.match(name):
        raise ModelError(f"invalid model name {name!r}: use letters, digits, '_', '.', '-'")
    return name


def model_path(name: str, version: str) -> str:
    """``models/<name>/<version>``."""
    return layout.model(check_name(name), version)


def _version_number(v: str) -> int:
    return int(v[1:]) if re.fullmatch(r"v\d+", v) else -1


def list_versions(store: str, name: str) -> list[str]:
    """Complete versions of a model, oldest first (``v1``, ``v2``…)."""
    fs, root = _store.store_root(store)
    base = f"{root}/{layout.model(check_name(name))}"
    try:
        entries = fs.ls(base, detail=False)
    except (FileNotFoundError, OSError):
        return []
    out = []
    for e in entries:
        v = posixpath.basename(e.rstrip("/"))
        if _version_number(v) > 0 and fs.exists(f"{base}/{v}/{_META}"):
            out.append(v)
    return sorted(out, key=_version_number)


def list_models(store: str) -> list[dict[str, Any]]:
    """``model.json`` of every version of every model, by name then version."""
    fs, root = _store.store_root(store)
    try:
        names = sorted(
            posixpath.basename(p.rstrip("/")) for p in fs.ls(f"{root}/{MODELS}", detail=False)
        )
    except (FileNotFoundError, OSError):
        return []
    out = []
    for name in names:
        if name.startswith(".") or not _NAME.match(name):
            continue
        out += [read_model_json(store, name, v) for v in list_versions(store, name)]
    return out


def next_version(store: str, name: str) -> str:
    """The version the next :func:`save_model` of ``name`` gets.

    Every ``v<N>`` folder counts, complete or not, so a version is never reused.
    """
    fs, root = _store.store_root(store)
    try:
        entries = fs.ls(f"{root}/{layout.model(check_name(name))}", detail=False)
    except (FileNotFoundError, OSError):
        entries = []
    numbers = [_version_number(posixpath.basename(e.rstrip("/"))) for e in entries]
    return f"v{max([0, *numbers]) + 1}"


@contextlib.contextmanager
def registry_lock(store: str, *, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the registry's store lock (``locks/models.lock``), waiting while it is held.

    Writers hold it only while they create a model version, append scores or record a
    label table (seconds), so a second writer waits instead of failing.  A lock left
    by a dead holder is taken over (see :func:`medpipe.store.store_lock`).

    Parameters
    ----------
    store
        Store URL or path.
    timeout_s
        Give up after this long.

    Raises
    ------
    StoreLockedError
        Still held by another live process after ``timeout_s``.
    """
    owner = f"models-{socket.gethostname()}-{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(store_lock(store, REGISTRY_LOCK, owner=owner))
            break
        except StoreLockedError:
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    with stack:
        yield


def resolve_version(store: str, name: str, version: str | None) -> str:
    """``version``, or the latest one; :class:`ModelError` when there is none."""
    versions = list_versions(store, name)
    if version in (None, "latest"):
        if not versions:
            raise ModelError(f"no model {name!r} in store {store!r} (medpipe models list)")
        return versions[-1]
    if version not in versions:
        raise ModelError(f"model {name!r} has no version {version!r}; versions: {versions}")
    return version


def _serialise(model: Any) -> tuple[str, bytes, dict[str, Any]]:
    """``(file name, bytes, extra model.json fields)``: skops, or ``.keras`` for a CNN."""
    cnn_file = cnn_saving.dump_model(model)
    if cnn_file is not None:  # Keras model file + the classifier's parameters
        return cnn_saving.MODEL_FILE, cnn_file.data, {"cnn": cnn_file.info}
    data = sio.dumps(model)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:  # would be refused at load time: fail now, not at scoring
        raise ModelError(f"model contains types outside the trusted list: {untrusted}")
    return _PIPELINE, data, {}


def save_model(
    store: str,
    name: str,
    model: Any,
    meta: dict[str, Any],
    *,
    files: dict[str, bytes] | None = None,
) -> str:
    """Save a fitted model as the next version of ``name`` (atomically).

    Parameters
    ----------
    store
        Store URL or path.
    name
        Model name.
    model
        The fitted estimator (every type in it must be in :data:`TRUSTED_TYPES`).
    meta
        Written to ``model.json`` with ``name``, ``version`` and ``created_at`` added.
    files
        Extra files (a ROC PNG…) to write in the version folder.

    Returns
    -------
    str
        The version (``v<N>``).
    """
    model_file, data, extra = _serialise(model)
    fs, _ = _store.store_root(store)
    with registry_lock(store):
        version = next_version(store, name)
        meta = {
            "name": name,
            "version": version,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **meta,
            **extra,
            "model_file": model_file,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        # a new version is published whole, and never replaces an existing one
        with _store.atomic_group(store, model_path(name, version), overwrite=False) as tmp:
            fs.makedirs(tmp, exist_ok=True)
            with fs.open(f"{tmp}/{model_file}", "wb") as fh:
                fh.write(data)
            for fname, blob in (files or {}).items():
                with fs.open(f"{tmp}/{fname}", "wb") as fh:
                    fh.write(blob)
            with fs.open(f"{tmp}/{_META}", "w") as fh:
                json.dump(meta, fh, indent=2, default=str)
    return version


def read_model_json(store: str, name: str, version: str | None = None) -> dict[str, Any]:
    """The ``model.json`` of a model version (latest by default)."""
    version = resolve_version(store, name, version)
    fs, root = _store.store_root(store)
    with fs.open(f"{root}/{model_path(name, version)}/{_META}") as fh:
        return json.load(fh)


def write_model_file(store: str, name: str, version: str, fname: str, blob: bytes) -> str:
    """Add a report file (e.g. ``reports/val.json``) to a model version; returns its path.

    The model file and ``model.json`` of a version are never rewritten.
    """
    if fname in (_PIPELINE, _META, cnn_saving.MODEL_FILE):
        raise ModelError(f"{model_path(name, version)}/{fname} is part of the version; "
                         "a model version is never rewritten")
    with registry_lock(store):
        return _store.atomic_write(store, f"{model_path(name, version)}/{fname}", blob)


def read_model_file(store: str, name: str, version: str, fname: str) -> bytes:
    """Read a file of a model version."""
    fs, root = _store.store_root(store)
    with fs.open(f"{root}/{model_path(name, version)}/{fname}", "rb") as fh:
        return fh.read()


def load_model(store: str, name: str, version: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Load a model version (latest by default) and its ``model.json``.

    Raises
    ------
    UntrustedModelError
        The file names a type outside :data:`TRUSTED_TYPES`; nothing is instantiated.
    ModelError
        No such model, an unreadable file, or a model file whose SHA-256 is not the one
        ``model.json`` records (altered or damaged after it was written).
    """
    meta = read_model_json(store, name, version)
    model_file = meta.get("model_file", _PIPELINE)
    if model_file not in (_PIPELINE, cnn_saving.MODEL_FILE):
        raise ModelError(f"model {name}:{meta['version']}: unknown model file {model_file!r}")
    data = read_model_file(store, name, meta["version"], model_file)
    where = f"{model_path(name, meta['version'])}/{model_file}"
    expected = meta.get("sha256")
    if expected is None and model_file == cnn_saving.MODEL_FILE:
        raise ModelError(f"{where}: model.json records no SHA-256; refusing to load it")
    if expected is None:
        log.warning("%s: model.json records no SHA-256 (written before medpipe checked "
                    "it); loading it unchecked", where)
    elif hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(
            f"model file {where} in store {store!r} does not match the SHA-256 recorded in "
            "its model.json: it was altered or damaged after it was written; refusing to "
            "load it (retrain, or restore the file)"
        )
    if model_file == cnn_saving.MODEL_FILE:  # checked layers, then safe_mode=True
        return cnn_saving.load_model_bytes(data, meta.get("cnn"), where=where), meta
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001 - a corrupt archive is a model error
        raise ModelError(f"model {name}:{meta['version']} is unreadable: {err}") from None
    if untrusted:
        raise UntrustedModelError(
            f"model {name}:{meta['version']} contains untrusted types {untrusted}; "
            "refusing to load it (it was not written by medpipe or has been altered)"
        )
    try:
        model = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as err:  # noqa: BLE001
        if type(err).__name__ == "UntrustedTypesFoundException":
            raise UntrustedModelError(f"model {name}:{meta['version']}: {err}") from None
        raise ModelError(f"model {name}:{meta['version']} cannot be loaded: {err}") from None
    return model, meta
