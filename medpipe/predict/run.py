"""``medpipe predict``: one new study through a trained model's own stages.

:func:`predict` de-identifies and reads ``PATH`` (a DICOM folder, a DICOM file or a
NIfTI file) into a working store with the ingest steps (:mod:`medpipe.ingest`),
checks each series against the domain the model was trained on
(:func:`medpipe.models.domain.domain_problems`), applies the model's recorded
preprocessing config (:mod:`medpipe.preprocess`) where it was trained on preprocessed
images, computes the model's recorded feature config (:mod:`medpipe.features`) and
scores them with the model (:func:`medpipe.models.estimators.positive_proba`, as
``medpipe score`` does), explaining each prediction (:mod:`medpipe.predict.explain`).

The working store is a temporary folder, deleted afterwards, unless ``store`` is given:
then it is kept (images, preprocessed images, the feature table and the catalog rows of
the input), like any store.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medpipe import catalog
from medpipe import store as _store
from medpipe.catalog import FileStat
from medpipe.errors import ConfigError, ModelError, ModelMismatchError
from medpipe.features import FeatureConfig
from medpipe.features.dataset import open_features, update_features
from medpipe.ingest import ingest_files
from medpipe.models.common import load_ref
from medpipe.models.domain import domain_problems
from medpipe.models.estimators import positive_proba
from medpipe.models.evaluation import check_compatible
from medpipe.predict.explain import Explanation, explain
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import preprocess_batch
from medpipe.store import WRITE_LOCK, layout, store_lock, tables

__all__ = [
    "Prediction", "Refusal", "PredictResult", "Recipe", "recipe", "predict",
]

@dataclass(frozen=True)
class Prediction:
    """The model's answer for one sample (a series, or a series and one ROI).

    Attributes
    ----------
    sample, series, roi
        The sample's name, its pseudonymous series key and ROI (``""``: whole image).
    modality
        The series' modality.
    probability
        P(label 1); ``None`` where a feature the model needs is missing.
    predicted
        1 when ``probability >= threshold`` (the model's recorded threshold), else 0;
        ``None`` without a probability.
    explanation
        The per-feature attribution (:func:`medpipe.predict.explain.explain`).
    """

    sample: str
    series: str
    roi: str
    modality: str
    probability: float | None
    predicted: int | None
    explanation: Explanation


@dataclass(frozen=True)
class Refusal:
    """Something of the input that got no prediction: ``what`` (a series key, or a file
    relative to ``PATH``) and ``reason``."""

    what: str
    reason: str


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` returns.

    Attributes
    ----------
    model
        ``NAME:VERSION`` of the model used.
    estimator
        Its kind (``logreg``, ``svm``, ``rf``, ``ensemble`` …).
    threshold
        The decision threshold recorded at training (Youden's J on the training rows).
    store
        The kept working store, or ``None`` (a temporary store, deleted).
    predictions
        One per sample of the accepted series.
    refused
        Series outside the model's domain (modality, geometry), with the reason.
    unread
        Files of the input that ingest quarantined or skipped, with the reason.
    """

    model: str
    estimator: str
    threshold: float
    store: str | None
    predictions: tuple[Prediction, ...]
    refused: tuple[Refusal, ...]
    unread: tuple[Refusal, ...]

    def to_dict(self, top: int | None = 10) -> dict[str, Any]:
        """JSON-ready view: the ``top`` contributions of each prediction (all: ``None``).

        ``NaN`` never appears: a missing probability is ``None``.
        """

        def num(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        preds = []
        for p in self.predictions:
            e = p.explanation
            preds.append({
                "sample": p.sample, "series": p.series, "roi": p.roi,
                "modality": p.modality, "probability": num(p.probability),
                "predicted": p.predicted,
                "contributions": {
                    "method": e.method or None, "units": e.units or None,
                    "bias": num(e.bias), "note": e.note or None,
                    "top": [{"feature": c.feature, "value": num(c.value),
                             "standardised": num(c.standardised),
                             "contribution": num(c.contribution)} for c in e.top(top)],
                },
            })
        return {
            "model": self.model, "estimator": self.estimator, "threshold": self.threshold,
            "store": self.store, "predictions": preds,
            "refused": [{"series": r.what, "reason": r.reason} for r in self.refused],
            "unread": [{"file": r.what, "reason": r.reason} for r in self.unread],
        }


@dataclass(frozen=True)
class Recipe:
    """The stages a model was trained with: feature config, preprocessing config (or
    ``None`` for raw images), the features' source group and the training domain."""

    features: FeatureConfig
    preprocess: PreprocessConfig | None
    source: str
    domain: dict[str, Any]


def recipe(meta: dict[str, Any]) -> Recipe:
    """The stage configs a model was trained with, rebuilt from its ``model.json``.

    Parameters
    ----------
    meta
        The model's ``model.json`` (:func:`medpipe.models.read_model_json`).

    Returns
    -------
    Recipe
        The validated feature and preprocessing configs, the features' source group
        (``images`` or ``preprocessed/<hash>``) and the training domain.

    Raises
    ------
    ModelError
        ``model.json`` does not record them (a model trained before medpipe did), or
        a recorded config does not hash to the hash recorded beside it.
    """
    ref = f"{meta.get('name')}:{meta.get('version')}"
    pre_hash = meta.get("preprocessing_hash")
    missing = [k for k in ("feature_config", "domain") if not meta.get(k)]
    if pre_hash and not meta.get("preprocess_config"):
        missing.append("preprocess_config")
    if missing:
        raise ModelError(
            f"model {ref} was trained before medpipe recorded {', '.join(missing)} in "
            "model.json, so predict cannot rebuild its stages or check an input: retrain "
            "it (medpipe train) and predict with the new version"
        )
    features = FeatureConfig.model_validate(meta["feature_config"])
    want = meta.get("feature_config_hash")
    if want and want not in (features.hash(), features.legacy_hash()):
        raise ModelError(f"model {ref}: the recorded feature config hashes to "
                         f"{features.hash()}, not to the recorded {want}")
    preprocess = None
    source = layout.IMAGES
    if pre_hash:
        preprocess = PreprocessConfig.model_validate(meta["preprocess_config"])
        if preprocess.hash() != pre_hash:
            raise ModelError(f"model {ref}: the recorded preprocessing config hashes to "
                             f"{preprocess.hash()}, not to the recorded {pre_hash}")
        source = layout.preprocessed(pre_hash)
    return Recipe(features, preprocess, source, dict(meta["domain"]))


def _input_files(path: Path) -> tuple[Path, list[FileStat]]:
    """The archive root and the files of ``path`` (a folder, or one file)."""
    if path.is_dir():
        files = catalog.scan(path)
        if not files:
            raise ConfigError(f"{path}: the folder holds no file")
        return path, files
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or folder")
    st = path.stat()
    return path.parent, [FileStat(path.name, st.st_size, st.st_mtime_ns)]


def _ingest(path: Path, work: str, *, secret: bytes, run_id: str
            ) -> tuple[list[str], list[Refusal]]:
    """Ingest the input's files into ``work``: the series keys written and the unread files.

    Only this input's files are planned (no catalogued sibling of another archive).
    """
    root, files = _input_files(path)
    rows = ingest_files(str(root), work, files, secret=secret, run_id=run_id)
    ingested = dict.fromkeys(r["series"] for r in rows if r["status"] == "ingested")
    keys = [k for k in ingested if _store.exists(work, layout.image(k))]
    unread = [Refusal(str(r["path"]), f"{r['status']}: {r.get('reason') or ''}".rstrip(": "))
              for r in rows if r["status"] in ("quarantined", "skipped")]
    return keys, unread


def _nothing(path: Path, ref: str, refused: list[Refusal], unread: list[Refusal]) -> str:
    why = [f"series {r.what}: {r.reason}" for r in refused]
    why += [f"{r.what}: {r.reason}" for r in unread]
    if not why:
        why = ["no image series was found"]
    return f"{path}: model {ref} refuses this input: " + "; ".join(why)


def _run(path: Path, meta: dict[str, Any], fitted: Any, rec: Recipe, *, work: str,
         secret: bytes, keep: bool) -> PredictResult:
    ref = f"{meta['name']}:{meta['version']}"
    run_id = catalog.new_run_id()
    with store_lock(work, WRITE_LOCK, owner=run_id):
        keys, unread = _ingest(path, work, secret=secret, run_id=run_id)
        accepted: list[str] = []
        refused: list[Refusal] = []
        for key in keys:
            attrs = _store.read_attrs(work, layout.image(key)).get("medpipe", {})
            problems = domain_problems(rec.domain, attrs)
            if problems:
                refused.append(Refusal(key, "; ".join(problems)))
            else:
                accepted.append(key)
        if rec.preprocess is not None and accepted:
            written, unsupported = preprocess_batch(work, accepted, config=rec.preprocess)
            refused += [Refusal(k, why) for k, why in unsupported.items()]
            accepted = [k for k in accepted if k in written]
        if not accepted:
            raise ModelMismatchError(_nothing(path, ref, refused, unread))
        # the input's rows of the working store's table (kept there with --store: a
        # series predicted before and unchanged is not computed again)
        group = update_features(work, config=rec.features, source=rec.source,
                                keys=accepted)["group"]
        table = open_features(work, group)
        series = tables.string_values(table["series"])
        table = table.isel(sample=np.flatnonzero(np.isin(series, accepted))).load()
        check_compatible(meta, table)
    names = list(meta["feature_names"])
    x = np.asarray(table["features"].sel(feature=names).values, dtype=np.float64)
    if len(meta.get("classes", [0, 1])) > 2:
        raise ModelError(f"medpipe predict supports binary models; {ref} has classes "
                         f"{meta['classes']} (use medpipe score)")
    prob = np.asarray(positive_proba(fitted, x), dtype=np.float64)
    thr = float(meta.get("threshold", 0.5))
    preds = []
    for i in range(x.shape[0]):
        p = float(prob[i])
        ok = math.isfinite(p)
        preds.append(Prediction(
            sample=str(table["sample"].values[i]), series=str(table["series"].values[i]),
            roi=str(table["roi"].values[i]), modality=str(table["modality"].values[i]),
            probability=p if ok else None, predicted=int(p >= thr) if ok else None,
            explanation=explain(fitted, x[i], names),
        ))
    return PredictResult(
        model=ref, estimator=str(meta.get("estimator", "")), threshold=thr,
        store=work if keep else None, predictions=tuple(preds), refused=tuple(refused),
        unread=tuple(unread),
    )


def predict(
    path: str | os.PathLike[str],
    *,
    model: str,
    model_store: str,
    store: str | None = None,
    secret: bytes | None = None,
) -> PredictResult:
    """Predict one new study with a registered model, through the model's own stages.

    Parameters
    ----------
    path
        A DICOM folder (every series in it is predicted), a DICOM file or a NIfTI file.
    model
        ``NAME`` or ``NAME:VERSION`` (default the latest version).
    model_store
        The store whose registry holds the model (``models/<name>/<version>``).
    store
        Keep the working store here (images, preprocessed images, the feature table and
        the catalog rows of the input); default a temporary store, deleted afterwards.
    secret
        Pseudonymisation secret; with it the series keys are those an ingest of the same
        files with the same secret gives.  Without it (temporary store only) a random
        one-off secret is used, so the keys match nothing else.

    Returns
    -------
    PredictResult
        The predictions, the refused series and the unread files, with reasons.

    Raises
    ------
    ModelError
        No such model, or a model whose ``model.json`` does not record its stage configs
        and training domain (trained before medpipe did): retrain it.
    ModelMismatchError
        No series of the input can be predicted; the message gives each reason (a
        modality or geometry the model was not trained on, an unreadable file).
    ConfigError
        ``path`` does not exist, or ``store`` without ``secret``.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    fitted, meta = load_ref(model_store, model)
    rec = recipe(meta)
    if store is not None:
        if secret is None:
            raise ConfigError("keeping the working store (--store) needs the "
                              "pseudonymisation secret (set MEDPIPE_SECRET)")
        return _run(path, meta, fitted, rec, work=store, secret=secret, keep=True)
    with tempfile.TemporaryDirectory(prefix="medpipe-predict-") as tmp:
        return _run(path, meta, fitted, rec, work=os.path.join(tmp, "store.zarr"),
                    secret=secret or os.urandom(32), keep=False)
