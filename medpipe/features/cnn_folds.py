"""The out-of-fold networks of the ``cnn`` family, saved beside the CNN they belong to.

``models/<name>/<version>/oof/<plan>/``: ``fold-<k>.keras`` and ``folds.json`` (their
SHA-256 and the sample keys each trained on).  A plan is named by
:func:`plan_id` (the table, the folds, the seed and every row's embedder), so a rerun
with the same plan reuses the networks after checking them (see :mod:`medpipe.features.cnn`).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from medpipe.errors import ModelError

__all__ = ["plan_id", "fold_path", "stored_folds", "store_folds"]


def plan_id(source: str, folds: int, seed: int, samples: np.ndarray, which: np.ndarray
             ) -> str:
    """16 hex digits naming a fold plan: table, folds, seed and every row's embedder."""
    h = hashlib.sha256(json.dumps([source, folds, seed]).encode())
    for s_, k in zip(samples.tolist(), which.tolist(), strict=True):
        h.update(f"{s_}\t{k}\n".encode())
    return h.hexdigest()[:16]


def fold_path(plan: str, name: str) -> str:
    """The path of a fold plan's file inside the model's folder."""
    return f"oof/{plan}/{name}"


def stored_folds(store: str, name: str, version: str, plan: str) -> list[bytes] | None:
    """The fold networks of ``plan`` saved beside the model, SHA-256 checked (or None)."""
    from medpipe.models import registry as reg

    try:
        info = json.loads(reg.read_model_file(store, name, version,
                                              fold_path(plan, "folds.json")))
    except FileNotFoundError:
        return None
    out = []
    for k, sha in enumerate(info["sha256"]):
        where = fold_path(plan, f"fold-{k}.keras")
        data = reg.read_model_file(store, name, version, where)
        if hashlib.sha256(data).hexdigest() != sha:
            raise ModelError(f"{reg.model_path(name, version)}/{where} does not match the "
                             "SHA-256 its folds.json records; refusing to load it")
        out.append(data)
    return out


def store_folds(store: str, name: str, version: str, plan: str, models: list[bytes], *,
                 source: str, folds: int, seed: int, samples: list[list[str]]) -> None:
    """Save the fold networks and what each trained on (sample keys) beside the model."""
    from medpipe.models import registry as reg

    for k, data in enumerate(models):
        reg.write_model_file(store, name, version, fold_path(plan, f"fold-{k}.keras"), data)
    info = {"source_group": source, "folds": folds, "seed": seed,
            "sha256": [hashlib.sha256(b).hexdigest() for b in models],
            "trained_on": samples}
    reg.write_model_file(store, name, version, fold_path(plan, "folds.json"),
                         json.dumps(info, indent=1).encode())
