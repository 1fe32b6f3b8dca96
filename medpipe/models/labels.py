"""Labels: read a CSV/Parquet keyed by DICOM identifiers, pseudonymise, join to features.

A label file has one key column (``SeriesInstanceUID``, ``StudyInstanceUID`` or
``PatientID``), a ``label`` column (0/1) and optionally ``split``
(``train``/``val``/``test``).  The keys are turned into the pseudonymous keys that
ingest writes (:func:`medpipe.deid.pseudonym` with the same secret), and the raw
identifiers are dropped at once: only pseudonymous keys are joined, stored or logged.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from medpipe import store as _store
from medpipe.deid import pseudonym
from medpipe.errors import ConfigError
from medpipe.models.registry import registry_lock
from medpipe.store import layout

__all__ = [
    "KEY_KINDS",
    "LABELS",
    "read_labels",
    "labels_hash",
    "write_labels",
    "read_stored_labels",
    "join_labels",
]

#: Store group of the pseudonymised label tables: ``labels/<hash>.parquet``.
LABELS = layout.LABELS

#: key kind -> (accepted column names, lower-cased; feature-table coord, pseudonym kind)
KEY_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "series": (("seriesinstanceuid", "series_uid", "series_instance_uid"), "series_uid"),
    "study": (("studyinstanceuid", "study_uid", "study_instance_uid"), "study"),
    "patient": (("patientid", "patient_id", "patient"), "patient"),
}


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"label file {path} not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        # identifiers are strings: never let pandas turn a UID or patient ID into a number
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read label file {path}: {err}") from None


def read_labels(
    path: str | Path,
    *,
    secret: bytes,
    label_column: str = "label",
) -> pd.DataFrame:
    """Read a label file and pseudonymise its keys.

    Parameters
    ----------
    path
        CSV or Parquet file with one of the key columns ``SeriesInstanceUID``,
        ``StudyInstanceUID`` or ``PatientID`` (first found, in that order), a label
        column and optionally ``split``.
    secret
        The deployment's pseudonymisation secret (the one ingest used).
    label_column
        Name of the 0/1 label column.

    Returns
    -------
    pandas.DataFrame
        Columns ``kind`` (``series``/``study``/``patient``), ``key`` (pseudonymous),
        ``label`` (int) and ``split`` (``""`` where absent).  No raw identifier.

    Raises
    ------
    ConfigError
        No key or label column, labels that are not 0/1, or one key with two labels.
    """
    raw = _read_table(path)
    lower = {str(c).lower(): c for c in raw.columns}
    found = None
    for kind, (names, _) in KEY_KINDS.items():
        col = next((lower[n] for n in names if n in lower), None)
        if col is not None:
            found = kind, col
            break
    if found is None:
        raise ConfigError(
            f"{path}: no key column; expected one of SeriesInstanceUID, StudyInstanceUID, "
            f"PatientID (columns: {list(raw.columns)})"
        )
    if label_column not in raw.columns:
        raise ConfigError(f"{path}: no {label_column!r} column (columns: {list(raw.columns)})")
    kind, col = found
    labels = pd.to_numeric(raw[label_column], errors="coerce")
    ok = labels.notna() & raw[col].astype(str).str.len().gt(0)
    values = set(np.unique(labels[ok]).tolist())
    if not values <= {0, 1}:
        raise ConfigError(f"{path}: labels must be 0 or 1 (binary); found {sorted(values)}")
    split_col = next((c for c in raw.columns if str(c).lower() == "split"), None)
    out = pd.DataFrame(
        {
            "kind": kind,
            "key": [pseudonym(str(v), secret=secret, kind=kind) for v in raw.loc[ok, col]],
            "label": labels[ok].astype(int).to_numpy(),
            "split": (
                raw.loc[ok, split_col].astype(str).str.strip().str.lower().to_numpy()
                if split_col is not None
                else ""
            ),
        }
    ).drop_duplicates()
    clash = out.groupby("key")["label"].nunique()
    if (clash > 1).any():
        raise ConfigError(f"{path}: {int((clash > 1).sum())} key(s) carry both labels")
    return out.drop_duplicates("key").sort_values("key", kind="stable").reset_index(drop=True)


def labels_hash(labels: pd.DataFrame) -> str:
    """Stable 12-hex-digit digest of a pseudonymised label table (order-independent)."""
    rows = labels[["kind", "key", "label", "split"]].sort_values(["kind", "key"])
    text = rows.to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_labels(store: str, labels: pd.DataFrame) -> str:
    """Record a pseudonymised label table in the store (idempotent).

    Returns
    -------
    str
        Its path, ``labels/<hash>.parquet``.
    """
    path = layout.label_table(labels_hash(labels))
    fs, root = _store.store_root(store)
    if not fs.exists(f"{root}/{path}"):
        buf = io.BytesIO()
        labels[["kind", "key", "label", "split"]].to_parquet(buf, index=False)
        with registry_lock(store):
            _store.atomic_write(store, path, buf.getvalue(), overwrite=False)
    return path


def read_stored_labels(store: str, path: str) -> pd.DataFrame:
    """Read a label table written by :func:`write_labels`."""
    fs, root = _store.store_root(store)
    try:
        with fs.open(f"{root}/{path}", "rb") as fh:
            return pd.read_parquet(fh)
    except FileNotFoundError:
        raise ConfigError(f"no label table {path!r} in store {store!r}") from None


def join_labels(table: xr.Dataset, labels: pd.DataFrame) -> xr.Dataset:
    """Set the ``label`` and ``split`` coords of a feature table from a label table.

    Each sample is matched on the coord of the label table's key kind (``series_uid``,
    ``study`` or ``patient``); unmatched samples get ``label = NaN`` and ``split = ""``.
    Only coords change: the (lazy) feature data are not touched.
    """
    out_label = np.full(table.sizes["sample"], np.nan)
    out_split = np.full(table.sizes["sample"], "", dtype=object)
    for kind, rows in labels.groupby("kind"):
        coord = KEY_KINDS[str(kind)][1]
        keys = pd.Index(rows["key"].astype(str))
        pos = keys.get_indexer([str(v) for v in table[coord].values])
        hit = pos >= 0
        out_label[hit] = rows["label"].to_numpy(dtype=float)[pos[hit]]
        out_split[hit] = rows["split"].astype(str).to_numpy()[pos[hit]]
    return table.assign_coords(label=("sample", out_label), split=("sample", out_split))
