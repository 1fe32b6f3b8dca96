"""Labels: read a CSV/Parquet keyed by DICOM identifiers, pseudonymise, join to features.

A label file has one key column (``SeriesInstanceUID``, ``StudyInstanceUID`` or
``PatientID``), a ``label`` column and optionally ``split`` (``train``/``val``/``test``).
Labels are 0/1 (binary, class 1 positive), or k >= 2 classes given as integer codes or
as class names (``CT``, ``MR``, ``PT`` …).  Anything but 0/1 is coded ``0 .. k-1`` in the
sorted order of the classes (numeric order for integers, else alphabetical) and the
table gets a ``class`` column with the names (:func:`label_classes`); with two such
classes the second is the positive one.  The keys are turned into the pseudonymous keys that
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
    "label_classes",
    "labels_hash",
    "stored_labels_path",
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


#: Label cells read as "no label" (besides the empty string), compared lower-cased.
_MISSING = frozenset({"nan", "na", "n/a", "none", "null"})


def _class_names(values: pd.Series) -> list[str]:
    """The label cells as stripped strings ("" for a missing one); integers as ``"3"``."""
    if pd.api.types.is_numeric_dtype(values):
        cells = [("" if not np.isfinite(v) else str(v))
                 for v in pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)]
    else:
        cells = [str(v).strip() for v in values.astype(str)]
    return ["" if c.lower() in _MISSING else _int_text(c) for c in cells]


def _int_text(text: str) -> str:
    """``"1.0"`` -> ``"1"``; anything that is not an integer-valued number unchanged."""
    try:
        v = float(text)
    except ValueError:
        return text
    return str(int(v)) if np.isfinite(v) and v.is_integer() else text


def _encode(path: str | Path, names: list[str], ok: np.ndarray,
            classes: list | None) -> tuple[np.ndarray, list[str] | None]:
    """Integer codes of the labelled rows, and the class names (None: plain 0/1 labels)."""
    present = sorted({n for n, keep in zip(names, ok, strict=True) if keep})
    if classes is None:
        numeric = [n for n in present if _is_number(n)]
        if set(present) <= {"0", "1"}:  # binary, exactly as before
            pass
        elif len(numeric) == len(present):  # integer codes 0 .. k-1
            codes = sorted({float(n) for n in present})
            if not all(c.is_integer() for c in codes) or codes != list(
                    map(float, range(len(codes)))):
                raise ConfigError(
                    f"{path}: numeric labels must be 0 or 1 (binary) or the integer codes "
                    f"0 .. k-1 of k classes (or use class names); found {present}")
            present = [str(int(c)) for c in codes]
        elif numeric:
            raise ConfigError(f"{path}: labels mix numbers {numeric[:3]} and class names "
                              f"{[n for n in present if n not in numeric][:3]}")
        if len(present) < 2 and set(present) - {"0", "1"}:
            raise ConfigError(f"{path}: a classifier needs at least 2 classes; found "
                              f"{present} only")
        classes = present if set(present) - {"0", "1"} else [0, 1]
    names_of = [_int_text(str(c)) for c in classes]
    code = {n: i for i, n in enumerate(names_of)}
    unknown = sorted(set(present) - set(code))
    if unknown:
        raise ConfigError(f"{path}: classes {unknown} are not among the model's classes "
                          f"{names_of}")
    codes_out = np.array([code[n] for n, k in zip(names, ok, strict=True) if k], dtype=int)
    return codes_out, (None if names_of == ["0", "1"] else names_of)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_classes(labels: pd.DataFrame) -> list:
    """The classes of a label table, in the order of their codes.

    Returns
    -------
    list
        ``[0, 1]`` for plain binary labels (no ``class`` column), otherwise the class
        names (``str``) of codes ``0 .. k-1`` -- of the codes the table holds: a table
        read with a model's ``classes`` lists only the classes found in its file.
    """
    if "class" not in labels.columns:
        return [0, 1]
    pairs = labels[["label", "class"]].drop_duplicates().sort_values("label")
    return [str(c) for c in pairs["class"]]


def read_labels(
    path: str | Path,
    *,
    secret: bytes,
    label_column: str = "label",
    classes: list | None = None,
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
        Name of the label column: 0/1, integer codes or class names (empty, ``NA`` or
        ``nan`` cells are unlabelled rows).
    classes
        Encode with these classes (a model's ``classes``, from its ``model.json``)
        instead of those found in the file, so that a held-out file lacking a class
        keeps the training codes.

    Returns
    -------
    pandas.DataFrame
        Columns ``kind`` (``series``/``study``/``patient``), ``key`` (pseudonymous),
        ``label`` (int code) and ``split`` (``""`` where absent), plus ``class`` (the
        class name) for labels other than 0/1 (:func:`label_classes`).  No raw
        identifier.

    Raises
    ------
    ConfigError
        No key or label column, fewer than 2 classes (other than 0/1 labels), non-integer
        numeric labels, a class outside ``classes``, or one key with two labels.
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
    names = _class_names(raw[label_column])
    ok = (np.array([n != "" for n in names], dtype=bool)
          & raw[col].astype(str).str.len().gt(0).to_numpy())
    codes, class_names = _encode(path, names, ok, classes)
    split_col = next((c for c in raw.columns if str(c).lower() == "split"), None)
    out = pd.DataFrame(
        {
            "kind": kind,
            "key": [pseudonym(str(v), secret=secret, kind=kind) for v in raw.loc[ok, col]],
            "label": codes,
            "split": (
                raw.loc[ok, split_col].astype(str).str.strip().str.lower().to_numpy()
                if split_col is not None
                else ""
            ),
        }
    )
    if class_names is not None:
        out["class"] = [class_names[c] for c in codes]
    out = out.drop_duplicates()
    clash = out.groupby("key")["label"].nunique()
    if (clash > 1).any():
        what = "both labels" if class_names is None else "two different labels"
        raise ConfigError(f"{path}: {int((clash > 1).sum())} key(s) carry {what}")
    return out.drop_duplicates("key").sort_values("key", kind="stable").reset_index(drop=True)


def labels_hash(labels: pd.DataFrame) -> str:
    """Stable 12-hex-digit digest of a pseudonymised label table (order-independent).

    The class names take part when the table has them (0/1 tables hash as before)."""
    rows = labels[_columns(labels)].sort_values(["kind", "key"])
    text = rows.to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _columns(labels: pd.DataFrame) -> list[str]:
    return ["kind", "key", "label", "split", *(["class"] if "class" in labels.columns else [])]


def stored_labels_path(labels: pd.DataFrame) -> str:
    """The store path :func:`write_labels` records a pseudonymised table under."""
    return layout.label_table(labels_hash(labels))


def write_labels(store: str, labels: pd.DataFrame) -> str:
    """Record a pseudonymised label table in the store (idempotent).

    Returns
    -------
    str
        Its path, ``labels/<hash>.parquet``.
    """
    path = stored_labels_path(labels)
    fs, root = _store.store_root(store)
    if not fs.exists(f"{root}/{path}"):
        buf = io.BytesIO()
        labels[_columns(labels)].to_parquet(buf, index=False)
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
