"""Feature tables in the store: ``features/<cfg-hash>`` as an xarray Dataset in Zarr."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from medpipe import store as _store
from medpipe.features.extract import FeatureConfig, extract
from medpipe.progress import Report, persist_with_progress
from medpipe.store import image_version, layout
from medpipe.store import outputs as _outputs
from medpipe.store import tables as _tables

__all__ = [
    "FEATURES",
    "features_group",
    "store_samples",
    "feature_table",
    "write_features",
    "open_features",
    "update_features",
    "stale_series",
]

log = logging.getLogger(__name__)

#: Store group of feature tables: ``features/<cfg-hash>``.
FEATURES = layout.FEATURES
#: Samples per chunk of a feature table.
_ROWS = 4096


def features_group(config: FeatureConfig, *, source: str = "images") -> str:
    """Group path of the table for ``config`` computed from ``source``.

    Tables from raw images live at ``features/<cfg-hash>``; from a preprocessed group
    ``preprocessed/<p>`` at ``features/<cfg-hash>-<p>`` so they never overwrite each other.
    """
    return layout.features(config.hash(), source=source)


def store_samples(
    store: str,
    *,
    source: str = "images",
    keys: Sequence[str] | None = None,
) -> list[tuple[str, xr.DataArray, dict[str, xr.DataArray]]]:
    """Lazy ``(series key, image, {roi: mask})`` triples for :func:`extract`.

    Parameters
    ----------
    store
        Store URL or path.
    source
        Group holding the images (``images`` or ``preprocessed/<hash>``).
    keys
        Only these series; default all complete series under ``source``.

    Returns
    -------
    list of tuple
        Time series (a ``t`` axis) are left out.
    """
    if keys is None:
        keys = [layout.key_of(p) for p in _store.list_groups(store, source)]
    out = []
    for key in keys:
        path = layout.source_image(source, key)
        image = _store.open_image(store, path)
        if "t" in image.dims:
            log.info("series %s: time series (%s) have no features yet; skipped", key, image.dims)
            continue
        out.append((key, image, _store.open_labels(store, path)))
    return out


def feature_table(
    store: str, *, config: FeatureConfig, source: str = "images", keys: Sequence[str] | None = None
) -> xr.Dataset:
    """The lazy feature table of the store's series (one sample per series and ROI).

    Adds per-sample coords ``modality``; ``version`` (of the image the sample was
    computed from, see :func:`medpipe.store.image_version`); the pseudonymous
    keys ``series_uid`` (of the SeriesInstanceUID), ``study`` and ``patient``; and
    ``label`` and ``split`` (from the series attributes where the source carried them,
    else NaN / "").

    Returns
    -------
    xarray.Dataset
        As :func:`medpipe.features.extract`, with the extra coords.
    """
    samples = store_samples(store, source=source, keys=keys)
    ds = extract(samples, config=config)
    attrs = {key: image.attrs for key, image, _ in samples}
    series = [str(s) for s in ds["series"].values]

    def coord(name: str, default: object, kind: type) -> np.ndarray:
        values = [
            attrs[s].get(name, (attrs[s].get("header") or {}).get(name, default)) for s in series
        ]
        return np.array(
            [default if v is None else kind(v) for v in values],
            dtype=object if kind is str else float,
        )

    return ds.assign_coords(
        modality=("sample", coord("modality", "", str)),
        version=("sample", np.array([image_version(attrs[s]) for s in series], dtype=object)),
        series_uid=("sample", coord("series_uid_key", "", str)),
        study=("sample", coord("study_key", "", str)),
        patient=("sample", coord("patient_key", "", str)),
        label=("sample", coord("label", np.nan, float)),
        split=("sample", coord("split", "", str)),
    ).assign_attrs(source=source)


def write_features(table: xr.Dataset, *, store: str, path: str) -> str:
    """Compute ``table`` (in the write, on the current Dask scheduler) and store it atomically.

    Returns
    -------
    str
        ``path``.
    """
    # one task per sample in the graph, but a few large chunks on disk
    _tables.write_table(table, store=store, path=path, rows=_ROWS)
    _outputs.record_table(store, path, _tables.open_table(store, path), input_coord="version",
                          replaced=True)
    return path


def open_features(store: str, path: str) -> xr.Dataset:
    """Open a stored feature table lazily.

    Raises
    ------
    SeriesNotFoundError
        No table at ``path``.
    """
    return _tables.open_table(store, path)


def _strings(values: xr.DataArray) -> list[str]:
    """Plain ``str`` values of a string coord (object or numpy StringDType)."""
    return [str(v) for v in values.values.tolist()]


def _has_table(store: str, path: str) -> bool:
    return _tables.has_table(store, path)


def _versions(store: str, source: str, index: pd.DataFrame | None = None) -> dict[str, str]:
    """Series key -> image version, for the series features can be computed for.

    From the outputs index when there is one (no image metadata read), else from every
    series' ``zarr.json``.
    """
    if index is not None:
        return _outputs.versions(index, source, skip_time=True)
    out = {}
    for p in _store.list_groups(store, source):
        attrs = _store.read_attrs(store, p).get("medpipe", {})
        if "t" not in attrs.get("axes", ()):  # time series: no features (yet)
            out[layout.key_of(p)] = image_version(attrs)
    return out


def _stale(current: dict[str, str], table: xr.Dataset | None) -> list[str]:
    have: dict[str, str] = {}
    if table is not None:
        have = dict(zip(_strings(table["series"]), _strings(table["version"]), strict=True))
    return _outputs.stale(current, have)


def _stale_now(
    store: str, path: str, current: dict[str, str], index: pd.DataFrame | None
) -> list[str]:
    """The stale series: a set difference on the index, else against the stored table."""
    if index is not None:
        return _outputs.stale(current, _outputs.inputs(index, path))
    return _stale(current, open_features(store, path) if _has_table(store, path) else None)


def stale_series(store: str, *, config: FeatureConfig, source: str = "images") -> list[str]:
    """Series whose features are missing or older than their image (cheap: metadata only).

    With an outputs index (:mod:`medpipe.store.outputs`) this reads the index only.

    Parameters
    ----------
    store
        Store URL or path.
    config
        Feature settings.
    source
        ``images`` or ``preprocessed/<hash>``.

    Returns
    -------
    list of str
        Series keys, sorted.
    """
    path = features_group(config, source=source)
    index = _outputs.read_index(store)
    return _stale_now(store, path, _versions(store, source, index), index)


def update_features(
    store: str,
    *,
    config: FeatureConfig,
    source: str = "images",
    keys: Sequence[str] | None = None,
    progress: Report | None = None,
) -> dict:
    """Bring ``features/<cfg-hash>`` up to date: compute only new or re-ingested series.

    Samples of series whose image version is unchanged are kept as stored; the others
    are computed (on the current Dask scheduler) and appended to the table
    (:func:`medpipe.store.append_samples`: the stored rows are not rewritten).  Samples
    of re-ingested or vanished series are dropped first (cleared in the table's live
    mask, :func:`medpipe.store.drop_samples`: bytes written grow with the rows dropped;
    the table is compacted when over a fifth of its rows are dead).  A table with no
    sample to keep is written afresh, atomically.  When nothing changed, nothing is
    computed or written.

    Parameters
    ----------
    store
        Store URL or path.
    config
        Feature settings.
    source
        ``images`` or ``preprocessed/<hash>``.
    keys
        Only bring these series up to date (``medpipe predict``: the input's series);
        the stored rows of the others are kept as they are.  Default: every series.
    progress
        Reports each sample computed (``features``, in samples), as its Dask task
        finishes (:func:`medpipe.progress.persist_with_progress`).

    Returns
    -------
    dict
        ``group`` (table path), ``computed`` (series computed), ``kept`` (samples kept)
        and ``keys`` (the series computed).
    """
    path = features_group(config, source=source)
    index = _outputs.read_index(store)
    current = _versions(store, source, index)
    stale = _stale_now(store, path, current, index)
    if keys is not None:
        wanted = set(keys)
        stale = [k for k in stale if k in wanted]
    samples = store_samples(store, source=source, keys=stale)
    if not samples:
        return {"group": path, "computed": 0, "kept": len(current) - len(stale), "keys": []}
    new = feature_table(store, config=config, source=source, keys=[k for k, _, _ in samples])
    new = persist_with_progress(new, var="features", description="features", report=progress)
    old = open_features(store, path) if _has_table(store, path) else None
    kept = 0
    if old is not None:
        series = np.array(_strings(old["series"]), dtype=object)
        keep = np.isin(series, list(current)) & ~np.isin(series, stale)
        kept = int(keep.sum())
        gone = np.array(_strings(old["sample"]), dtype=object)[~keep]
        if kept and len(gone):
            _tables.drop_samples(store, path, gone.tolist())
            # recorded once dropped; the new rows are recorded after their append
            _outputs.record_table(store, path, input_coord="version",
                                  dropped=dict(zip(gone, series[~keep], strict=True)))
    if kept:
        _tables.append_samples(new, store=store, path=path, rows=_ROWS)
        _outputs.record_table(store, path, new, input_coord="version")
    else:
        write_features(new, store=store, path=path)
    return {
        "group": path,
        "computed": len(samples),
        "kept": kept,
        "keys": [k for k, _, _ in samples],
    }
