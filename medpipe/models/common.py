"""Helpers shared by training, evaluation and scoring: feature tables, references, snapshots."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import xarray as xr

from medpipe import catalog
from medpipe.errors import ConfigError
from medpipe.features.dataset import open_features
from medpipe.models import registry as reg
from medpipe.store import tables

__all__ = ["catalog_hash", "library_versions", "feature_table", "strings", "load_ref"]


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


def feature_table(store: str, group: str) -> xr.Dataset:
    """The stored feature table ``group``, lazily.

    Raises
    ------
    ConfigError
        No such table (the message says to run ``medpipe features``).
    """
    if not tables.has_table(store, group):
        raise ConfigError(f"no feature table {group!r} in store {store!r}; run medpipe features")
    return open_features(store, group)


def strings(a: xr.DataArray) -> np.ndarray:
    """Plain ``str`` values (object array) of a string coord."""
    return np.array([str(v) for v in a.values], dtype=object)


def load_ref(store: str, model: str) -> tuple[Any, dict[str, Any]]:
    """Load the registered model ``NAME`` or ``NAME:VERSION`` and its ``model.json``."""
    name, version = reg.parse_model_ref(model)
    return reg.load_model(store, name, version)
