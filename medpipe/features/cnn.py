"""The ``cnn`` feature family: penultimate-layer embeddings of a registered CNN (issue 12).

The method's hybrid path: a CNN registered by ``train --estimator cnn`` embeds every
sample of a feature table (the output of its global-average-pooling layer ``pool``, the
layer before its dropout and softmax), and a linear SVM, logistic regression or forest
trains on those embeddings next to the handcrafted families, as an ordinary ``train``
run on the table :func:`cnn_features` writes.

**How leakage is avoided.**  A CNN embeds the rows it was trained on better than any
other row (it has fitted them), so embedding the ``train`` rows with the registered CNN
would hand the downstream classifier, and its cross-validation, features that know the
labels.  :func:`cnn_features` therefore embeds

* the rows the CNN was **not** trained on (``val``, ``test``, unlabelled, new series:
  every row outside the training rows recorded in its ``model.json``) with the
  registered model itself, as ``score`` would see them;
* the rows it **was** trained on *out of fold*: they are split into ``folds``
  patient-grouped, stratified folds (:func:`medpipe.models.search.grouped_folds`, so a
  patient's images are never on both sides), a CNN with the registered model's
  parameters and seed is trained on each fold's complement (on the Dask cluster, one
  fit per worker), and each embeds only its held-out fold.

So no row is ever embedded by a network that saw it (:func:`plan_embedders` is that
decision; the table's ``embedded_by`` coord names the network of every row, ``final``
or ``fold-<k>``, and ``tests/features/test_cnn_family.py`` fails if a training row is
embedded by a network trained on it).  The fold networks start from the same initial
weights as the final one (same seed) and are trained by the same recipe on
``(folds - 1) / folds`` of its rows, which keeps their embedding axes close to the
final network's; the residual mismatch is the usual price of out-of-fold stacking
features (it costs accuracy, never leaks).  The downstream model's own grouped CV is
then a stacking CV: a validation row's embedding never came from a network that saw it.

The table keeps the source table's layout and coords (``sample, feature``; ``series``,
``roi``, ``patient`` …), with the source's features followed by ``cnn_<model>_<i>``;
its ``cnn`` attribute (JSON) is the lineage: the model ``name:version`` and SHA-256, the
source table, the folds, their seed and the fold networks' SHA-256.  Embeddings are
computed with :func:`dask.array.map_blocks` over blocks of rows on the current Dask
scheduler; each worker loads each network once (checked and ``safe_mode`` loaded, as
every registered CNN).

The family is registered (``cnn`` in :data:`~medpipe.features.registry.BUILTIN_MODULES`)
so its name is reserved and listed, but it is not computed from a ``FeatureConfig``: it
needs a trained model, so asking a feature config for it raises a
:class:`~medpipe.errors.ConfigError` pointing to :func:`cnn_features`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from medpipe.errors import ConfigError, ModelError
from medpipe.features import cnn_folds as folds_
from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = ["FAMILY", "NAME", "cnn_features", "cnn_group", "embedding_names",
           "plan_embedders", "training_rows"]

log = logging.getLogger(__name__)

#: The family name.
NAME = "cnn"
#: The layer whose output is the embedding (global average pooling before the classifier).
LAYER = "pool"
#: The network's first layer (standardisation with its training rows' mean, variance).
STANDARDISE = "standardise"
#: ``embedded_by`` value of rows embedded by the registered (final) model.
FINAL = "final"
#: Rows per block of the embedding's ``map_blocks``.
BLOCK_ROWS = 256
#: Rows per prediction batch (padded: one compiled shape).
_BATCH = 128


def embedding_names(model: str, dim: int) -> list[str]:
    """``cnn_<model>_<i>``, ``i = 000 … dim - 1``."""
    return [f"cnn_{model}_{i:03d}" for i in range(dim)]


def plan_embedders(seen: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int,
                   seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Which network embeds each row: the leakage rule.

    Parameters
    ----------
    seen
        Boolean per row: the registered CNN was trained on it.
    y, groups
        Label code and patient key per row (only the ``seen`` rows are read).
    folds
        Patient-grouped, stratified folds of the ``seen`` rows (at least 2).
    seed
        Seed of the folds.

    Returns
    -------
    which : numpy.ndarray
        Per row, ``-1`` (the final model: a row it never saw) or the fold ``k`` whose
        network, trained without that fold, embeds it.
    train_rows : list of numpy.ndarray
        Per fold ``k``, the row indices its network trains on (the ``seen`` rows of the
        other folds).
    """
    from medpipe.models.search import grouped_folds

    if folds < 2:
        raise ConfigError(f"cnn features: folds={folds}; at least 2 are needed")
    seen = np.asarray(seen, dtype=bool)
    which = np.full(len(seen), -1, dtype=np.int64)
    idx = np.flatnonzero(seen)
    if len(idx) == 0:
        return which, []
    split = grouped_folds(np.asarray(y)[idx].astype(int), np.asarray(groups)[idx],
                          n_splits=folds, seed=seed)
    train_rows = []
    for k, (tr, va) in enumerate(split):
        which[idx[va]] = k
        train_rows.append(idx[tr])
    if (which[idx] < 0).any():  # every trained-on row must be held out by one fold
        raise ModelError("cnn features: the folds do not cover every training row")
    return which, train_rows


def training_rows(table: xr.Dataset, meta: dict[str, Any], store: str) -> np.ndarray:
    """The rows of ``table`` the registered model was trained on (boolean per sample).

    As ``train`` chose them: labelled in the model's stored label table and in split
    ``train`` (every labelled row when the labels had no split).  A row with missing
    pixels counts too (it cannot be embedded anyway).
    """
    from medpipe.models import labels as lab

    info = meta.get("labels") or {}
    if "path" not in info:
        raise ModelError(f"model {meta.get('name')}:{meta.get('version')}: model.json "
                         "records no label table; cannot tell its training rows")
    joined = lab.join_labels(table, lab.read_stored_labels(store, info["path"]))
    known = np.isfinite(joined["label"].values)
    split = np.array([str(s) for s in joined["split"].values], dtype=object)
    return known & (split == "train") if info.get("split_used") == "train" else known


def _patients(table: xr.Dataset) -> np.ndarray:
    """Patient key per sample (the series key where the patient is unknown), as ``train``
    groups its folds."""
    patient = np.array([str(v) for v in table["patient"].values], dtype=object)
    series = (np.array([str(v) for v in table["series_uid"].values], dtype=object)
              if "series_uid" in table.coords else patient)
    return np.where(patient != "", patient, series)


# ------------------------------------------------------------------ on the workers
_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()
_predict_lock = threading.RLock()


def _embedder(data: bytes) -> tuple[Any, float, float]:
    """The Keras sub-model ``standardised image -> pool`` holding the weights of ``data``
    (checked, ``safe_mode`` loaded), with that network's standardisation mean and scale.

    Networks of one architecture (the final one and its fold networks) share one
    sub-model per process, whose weights are swapped: Keras on JAX passes the weights to
    its compiled predict function as arguments, so a worker compiles it once, not once
    per network.
    """
    key = hashlib.sha256(data).hexdigest()
    with _cache_lock:
        if key not in _cache:
            from medpipe.models.cnn.backend import keras
            from medpipe.models.cnn.saving import load_keras_bytes

            net = load_keras_bytes(data, where=f"cnn network {key[:12]}")
            # the sub-graph after the standardisation (its mean and variance are
            # constants of each network's config, applied here), up to the pool layer
            std = net.get_layer(STANDARDISE)
            conf = std.get_config()
            sub = keras().Model(std.output, net.get_layer(LAYER).output)
            weights = sub.get_weights()
            arch = repr((tuple(std.output.shape), tuple(w.shape for w in weights)))
            _cache.setdefault(arch, sub)
            scale = max(float(np.sqrt(np.asarray(conf["variance"]).item())), 1e-7)
            _cache[key] = (arch, weights, float(np.asarray(conf["mean"]).item()), scale)
        arch, weights, mean, scale = _cache[key]
        model = _cache[arch]
        model.set_weights(weights)
        return model, mean, scale


def _embed(data: bytes, img: np.ndarray) -> np.ndarray:
    pad = (-len(img)) % _BATCH
    x = np.concatenate([img, np.zeros((pad, *img.shape[1:]), img.dtype)])
    with _predict_lock:  # one network's weights in the shared sub-model at a time
        model, mean, scale = _embedder(data)
        x = ((x - mean) / scale).astype(np.float32)
        out = np.asarray(model.predict(x, batch_size=_BATCH, verbose=0), dtype=np.float64)
    return out[: len(img)]


def _embed_block(x: np.ndarray, which: np.ndarray, models: tuple[bytes, ...], dim: int
                 ) -> np.ndarray:
    """Embeddings of a block of pixel rows; row ``i`` by ``models[which[i] + 1]``."""
    x = np.asarray(x, dtype=np.float32)
    which = np.asarray(which).reshape(-1)
    out = np.full((len(x), dim), np.nan)
    size = int(round(np.sqrt(x.shape[1])))
    ok = np.isfinite(x).all(axis=1)
    for m in np.unique(which[ok]):
        rows = np.flatnonzero(ok & (which == m))
        out[rows] = _embed(models[int(m) + 1], x[rows].reshape(len(rows), size, size, 1))
    return out


def _fit_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, params: dict[str, Any]
              ) -> bytes:
    """Train one fold network (on a worker) and return its ``.keras`` bytes."""
    from medpipe.models.cnn.classifier import CNNClassifier
    from medpipe.models.cnn.saving import keras_bytes

    clf = CNNClassifier(**params).fit(x, y, groups=groups)
    return keras_bytes(clf.model_)


# ------------------------------------------------------------------ the stage
def cnn_group(source: str, model: str, version: str) -> str:
    """Group of the table :func:`cnn_features` writes: ``features/<source>+cnn-<m>-<v>``."""
    from medpipe.store import layout

    base = source.rstrip("/").rsplit("/", 1)[-1]
    return layout.features(f"{base}+cnn-{model}-{version}")


def cnn_features(
    store: str,
    *,
    model: str,
    features: str | None = None,
    folds: int = 5,
    seed: int = 0,
    block_rows: int = BLOCK_ROWS,
) -> dict[str, Any]:
    """Write a feature table with a registered CNN's embeddings (see the module doc).

    Parameters
    ----------
    store
        Store URL or path.
    model
        The CNN, ``NAME`` or ``NAME:VERSION`` in the store's registry.
    features
        The feature table whose rows to embed (it must hold the CNN's pixel columns);
        default the model's own training table.
    folds
        Out-of-fold networks for the rows the CNN was trained on (patient-grouped).
    seed
        Seed of those folds.
    block_rows
        Rows per embedding block (one task each).

    Returns
    -------
    dict
        ``group`` (the new table), ``model`` (``name:version``), ``n_samples``,
        ``n_out_of_fold`` (training rows embedded by fold networks), ``features``
        (the new feature names).

    Raises
    ------
    ConfigError
        No such table, or it lacks the CNN's pixel columns.
    ModelError
        The model is not a CNN (or cannot be loaded safely).
    """
    from medpipe.features.dataset import open_features, write_features
    from medpipe.models import labels as lab
    from medpipe.models import registry as reg
    from medpipe.models.cnn.saving import find_cnn, keras_bytes
    from medpipe.store import WRITE_LOCK, store_lock, tables

    name, version = reg.parse_model_ref(model)
    meta = reg.read_model_json(store, name, version)
    version = str(meta["version"])
    if meta.get("estimator") != "cnn" or "cnn" not in meta:
        raise ModelError(f"model {name}:{version} is a {meta.get('estimator')!r} model, "
                         "not a CNN: the cnn feature family embeds with a CNN "
                         "(train one with --estimator cnn)")
    fitted, meta = reg.load_model(store, name, version)  # SHA-256 checked, safe mode
    clf = find_cnn(fitted)
    assert clf is not None
    source = features or str(meta["features_group"])
    if not tables.has_table(store, source):
        raise ConfigError(f"no feature table {source!r} in store {store!r}; run medpipe "
                          "features")
    table = open_features(store, source)
    names = list(meta["feature_names"])
    pixel_names = [names[c] for c in clf.columns] if clf.columns is not None else names
    have = {str(f) for f in table["feature"].values}
    missing = [p for p in pixel_names if p not in have]
    if missing:
        raise ConfigError(f"feature table {source!r} lacks {len(missing)} of the pixel "
                          f"columns CNN {name}:{version} reads (first: {missing[0]}); "
                          "compute the 'pixels' family with the model's pixels_size")
    seen = training_rows(table, meta, store)
    # labels and patients as train read them: the model's label table joined to this table
    joined = lab.join_labels(table, lab.read_stored_labels(store, meta["labels"]["path"]))
    y = np.nan_to_num(joined["label"].values).astype(int)
    groups = _patients(table)
    which, fold_rows = plan_embedders(seen, y, groups, folds=folds, seed=seed)
    pix = table["features"].sel(feature=pixel_names)
    params = {k: v for k, v in clf.get_params().items() if k != "row_groups"}
    params["columns"] = None
    samples = np.array([str(v) for v in table["sample"].values], dtype=object)
    plan = folds_.plan_id(source, folds, seed, samples, which)
    fold_models = folds_.stored_folds(store, name, version, plan)
    if fold_models is None and fold_rows:
        x_seen = np.asarray(pix.isel(sample=np.flatnonzero(seen)).values, dtype=np.float64)
        pos = {r: i for i, r in enumerate(np.flatnonzero(seen))}
        fits = []
        for rows in fold_rows:
            local = np.array([pos[r] for r in rows])
            ok = np.isfinite(x_seen[local]).all(axis=1)
            fits.append(dask.delayed(_fit_fold, pure=True)(
                x_seen[local][ok], y[rows][ok], groups[rows][ok], params))
        log.info("cnn features: training %d out-of-fold networks for %d training rows",
                 len(fits), int(seen.sum()))
        fold_models = list(dask.compute(*fits))
        folds_.store_folds(store, name, version, plan, fold_models, source=source, folds=folds,
                     seed=seed, samples=[samples[r].tolist() for r in fold_rows])
    fold_models = fold_models or []
    final = keras_bytes(clf.model_)
    dim = int(clf.model_.get_layer(LAYER).output.shape[-1])
    models = dask.delayed((final, *fold_models), pure=True)
    x = pix.data if isinstance(pix.data, da.Array) else da.from_array(np.asarray(pix.data))
    x = x.rechunk({0: block_rows, 1: -1})
    w = da.from_array(which[:, None], chunks=(x.chunks[0], (1,)))
    emb = da.map_blocks(_embed_block, x, w, models, dim, dtype=np.float64,
                        chunks=(x.chunks[0], (dim,)))
    new_names = embedding_names(name, dim)
    cnn_part = xr.Dataset(
        {"features": (("sample", "feature"), emb)},
        coords={"sample": table["sample"].values, "feature": np.array(new_names, object)},
    )
    by = np.array([FINAL if k < 0 else f"fold-{k}" for k in which], dtype=object)
    out = xr.concat([table[["features"]], cnn_part], dim="feature",
                    coords="minimal", compat="override", join="override")
    out = out.assign_coords(embedded_by=("sample", by))
    lineage = {
        "model": f"{name}:{version}", "sha256": meta.get("sha256"), "layer": LAYER,
        "dims": dim, "source_group": source, "folds": len(fold_models), "seed": seed,
        "fold_sha256": [hashlib.sha256(b).hexdigest() for b in fold_models],
        "n_out_of_fold": int(seen.sum()), "plan": plan,
        "fold_files": f"{reg.model_path(name, version)}/{folds_.fold_path(plan, '')}",
        "rule": "rows the CNN was trained on: embedded by the fold network that did not "
                "see them; other rows: by the registered model",
    }
    out.attrs = {**table.attrs, "cnn": json.dumps(lineage, sort_keys=True)}
    group = cnn_group(source, name, version)
    with store_lock(store, WRITE_LOCK, owner=f"cnn-features-{name}-{version}"):
        write_features(out, store=store, path=group)
    return {"group": group, "model": f"{name}:{version}", "n_samples": int(len(which)),
            "n_out_of_fold": int(seen.sum()), "features": new_names}


# ------------------------------------------------------------------ the registry record
def _names(config: FeatureConfig) -> list[str]:
    raise ConfigError(
        "feature family 'cnn' is computed from a registered CNN model, not from a feature "
        "config: train one (medpipe train ... --estimator cnn), then call "
        "medpipe.features.cnn.cnn_features(store, model='NAME:VERSION')"
    )


def _compute(sample: Sample) -> dict[str, float]:
    _names(sample.config)
    return {}


FAMILY = register_family(Family(NAME, _names, _compute, needs_roi=False))
