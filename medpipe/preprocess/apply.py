"""Apply a preprocessing config to a series in the store (lazy until the write)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from medpipe import store as _store
from medpipe.errors import UnsupportedSourceError
from medpipe.preprocess.pipeline import PreprocessConfig, ResampleStep, run
from medpipe.preprocess.resample import resample_isotropic
from medpipe.store import image_version, layout
from medpipe.store import outputs as _outputs

__all__ = [
    "PREPROCESSED",
    "preprocessed_group",
    "preprocess_series",
    "pending_series",
    "image_version",
]

#: Store group of preprocessed images: ``preprocessed/<cfg-hash>/<series>``.
PREPROCESSED = layout.PREPROCESSED

#: Series attributes carried from the source image to its preprocessed version.
_CARRIED = (
    "series_key",
    "series_uid_key",
    "study_key",
    "patient_key",
    "modality",
    "rescale",
    "header",
    "split",
    "label",
)


def preprocessed_group(config: PreprocessConfig) -> str:
    """The store group holding the images preprocessed with ``config``."""
    return layout.preprocessed(config.hash())


def pending_series(store: str, *, config: PreprocessConfig, source: str = "images") -> list[str]:
    """Keys of the series under ``source`` without an up-to-date output for ``config``.

    A series is pending when it has no complete output yet, or when its source image
    was re-ingested after the output was written.  With an outputs index
    (:mod:`medpipe.store.outputs`) this is a set difference on the index and reads no
    image metadata, and a series found unsupported (not a grey-level ``z, y, x``
    volume) is not pending again until it changes; a store without an index (made
    before it) is read as before: two ``zarr.json`` per series, the unsupported ones
    pending every run.

    Parameters
    ----------
    store
        Store URL or path.
    config
        The preprocessing config.
    source
        Group holding the input images.

    Returns
    -------
    list of str
        Series keys, sorted.
    """
    group = preprocessed_group(config)
    index = _outputs.read_index(store)
    if index is not None:
        return _outputs.stale(_outputs.versions(index, source), _outputs.inputs(index, group))
    done = {layout.key_of(p) for p in _store.list_groups(store, group)}
    pending = []
    for path in _store.list_groups(store, source):
        key = layout.key_of(path)
        if key in done:
            made_from = _store.read_attrs(store, layout.source_image(group, key)).get("medpipe", {})
            current = image_version(_store.read_attrs(store, path).get("medpipe", {}))
            if made_from.get("preprocess", {}).get("source_version") == current:
                continue
        pending.append(key)
    return pending


def _regrid_label(mask: xr.DataArray, config: PreprocessConfig) -> xr.DataArray:
    """Masks follow the image's grid changes (nearest neighbour), nothing else."""
    for step in config.steps:
        if isinstance(step, ResampleStep):
            mask = resample_isotropic(mask, spacing_mm=step.spacing_mm, order=0)
    return mask


def preprocess_series(
    store: str, key: str, *, config: PreprocessConfig, source: str = "images",
    record: bool = True,
) -> str:
    """Preprocess one series and write it to ``preprocessed/<cfg-hash>/<key>``.

    The filters are lazy; they are computed chunk by chunk by the write, on whatever
    Dask scheduler is current (the cluster's, inside a flow).

    Parameters
    ----------
    store
        Store URL or path.
    key
        Series key under ``source``.
    config
        The preprocessing config.
    source
        Group holding the input images.
    record
        Record the output in the outputs index once written (:func:`preprocess_batch`
        records its whole batch at once instead).

    Returns
    -------
    str
        The output group path.

    Raises
    ------
    UnsupportedSourceError
        For images that are not grey-level ``(z, y, x)`` volumes (colour, 4D).
    """
    src = layout.source_image(source, key)
    image = _store.open_image(store, src)
    if tuple(image.dims) != ("z", "y", "x"):
        raise UnsupportedSourceError(
            f"preprocessing needs a grey-level (z, y, x) image, series {key} has {image.dims}"
        )
    out = run(image, config)
    labels = {
        roi: _regrid_label(mask, config).data
        for roi, mask in _store.open_labels(store, src).items()
    }
    attrs: dict[str, Any] = {k: image.attrs[k] for k in _CARRIED if k in image.attrs}
    attrs["preprocess"] = {
        "config": config.model_dump(mode="json"),
        "hash": config.hash(),
        "source": src,
        "source_version": image_version(image.attrs),
    }
    path = layout.preprocessed_image(config.hash(), key)
    _store.write_image(out, store=store, path=path, attrs=attrs, labels=labels)
    if record:
        _outputs.record_images(store, preprocessed_group(config), [key])
    return path


def preprocess_batch(
    store: str, keys: Sequence[str], *, config: PreprocessConfig, source: str = layout.IMAGES
) -> tuple[dict[str, str], dict[str, str]]:
    """Preprocess a batch of series; an unsupported one is listed with its reason.

    Parameters
    ----------
    store
        Store URL or path.
    keys
        Series keys of ``source``.
    config
        The preprocessing config.
    source
        ``images`` (as ingested).

    Returns
    -------
    written : dict
        Series key → store path of its preprocessed image.
    unsupported : dict
        Series key → why it was not preprocessed (e.g. not a grey-level z,y,x volume).
    """
    written: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for key in keys:
        try:
            written[key] = preprocess_series(store, key, config=config, source=source,
                                             record=False)
        except UnsupportedSourceError as err:
            unsupported[key] = err.reason
    # one index part per batch, once its series are written; the unsupported ones are
    # not pending again until they change
    _outputs.record_images(store, preprocessed_group(config), list(written))
    _outputs.record_unsupported(store, preprocessed_group(config), list(unsupported),
                                source=source)
    return written, unsupported
