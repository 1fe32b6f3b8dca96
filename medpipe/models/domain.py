"""What a model was trained on, recorded in ``model.json``, and the check of a new input.

:func:`training_domain` summarises the training series (modalities, 2D or 3D, channels,
the range of image sizes, whole images or ROIs); :func:`preprocess_record` keeps the
preprocessing config of a model trained on preprocessed images (the config itself, not
only its hash), so ``medpipe predict`` can rebuild every stage a new study needs.
:func:`domain_problems` says, in words, why an ingested series is outside that domain.

Everything here reads the store's JSON attributes only (no image data), so recording
the domain costs one small read per training series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import xarray as xr

from medpipe import store as _store
from medpipe.errors import SeriesNotFoundError
from medpipe.store import layout
from medpipe.store.tables import string_values

__all__ = ["geometry_of", "training_domain", "preprocess_record", "domain_problems"]

#: Spatial axes in store order.
_SPATIAL = ("z", "y", "x")


def geometry_of(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The geometry family of one stored image from its ``medpipe`` attributes.

    Parameters
    ----------
    attrs
        The image's ``"medpipe"`` attributes (``axes``, ``shape``).

    Returns
    -------
    dict
        ``dims`` (2 for a single plane, including a ``z`` axis of size 1, else 3),
        ``channels`` (size of the ``c`` axis, 1 without one), ``size`` (``{axis: n}``
        for ``z``, ``y``, ``x``; ``z`` is 1 for a plane) and ``time`` (whether the image
        has a ``t`` axis).
    """
    axes = [str(a) for a in attrs.get("axes", ())]
    shape = [int(n) for n in attrs.get("shape", ())]
    dims = dict(zip(axes, shape, strict=False))
    size = {a: int(dims.get(a, 1)) for a in _SPATIAL}
    return {
        "dims": 2 if size["z"] == 1 else 3,
        "channels": int(dims.get("c", 1)),
        "size": size,
        "time": "t" in dims,
    }


def _image_attrs(store: str, source: str, key: str) -> dict[str, Any]:
    """The ``medpipe`` attributes of the ingested image ``key`` (else of ``source``'s)."""
    for path in (layout.image(key), layout.source_image(source, key)):
        try:
            return dict(_store.read_attrs(store, path).get("medpipe", {}))
        except SeriesNotFoundError:
            continue
    return {}


def training_domain(store: str, table: xr.Dataset, *, source: str = layout.IMAGES
                    ) -> dict[str, Any]:
    """The modalities and image geometry of a model's training samples.

    Parameters
    ----------
    store
        Store URL or path.
    table
        The training rows of the feature table (coords ``series``, ``roi`` and, where
        the table has it, ``modality``).
    source
        The group the features were computed from; the geometry is read from the
        ingested image (``images/<key>``), which is what a new input is checked
        against before any preprocessing, and from ``source`` where that is absent.

    Returns
    -------
    dict
        ``modalities`` (sorted), ``dims`` and ``channels`` (sorted lists of the values
        seen), ``size`` (``{axis: [min, max]}``), ``samples`` (``"whole image"``,
        ``"roi"`` or ``"mixed"``) and ``n_series``.  JSON-serialisable.
    """
    keys = sorted(set(string_values(table["series"])))
    attrs = {k: _image_attrs(store, source, k) for k in keys}
    if "modality" in table.coords:
        modalities = set(string_values(table["modality"]))
    else:
        modalities = {str(a.get("modality", "")) for a in attrs.values()}
    geoms = [geometry_of(a) for a in attrs.values() if a]
    rois = set(string_values(table["roi"])) if "roi" in table.coords else {""}
    whole, roi = "" in rois, bool(rois - {""})
    return {
        "modalities": sorted(m for m in modalities if m),
        "dims": sorted({g["dims"] for g in geoms}),
        "channels": sorted({g["channels"] for g in geoms}),
        "size": {
            a: [min(g["size"][a] for g in geoms), max(g["size"][a] for g in geoms)]
            for a in _SPATIAL
        } if geoms else {},
        "samples": "mixed" if whole and roi else ("roi" if roi else "whole image"),
        "n_series": len(keys),
    }


def preprocess_record(store: str, source: str, keys: Iterable[str]) -> dict[str, Any] | None:
    """The preprocessing config (as JSON data) the images of ``source`` were made with.

    Parameters
    ----------
    store
        Store URL or path.
    source
        ``images`` (nothing to record) or ``preprocessed/<hash>``.
    keys
        Series keys of the training rows; the first one whose preprocessed image records
        its config is used (every image of the group was made with the same config).

    Returns
    -------
    dict or None
        The config's ``model_dump`` (rebuild it with ``PreprocessConfig.model_validate``),
        or ``None`` for raw images or when no image records it.
    """
    if layout.preprocessing_hash(source) is None:
        return None
    for key in keys:
        try:
            attrs = _store.read_attrs(store, layout.source_image(source, key))
        except SeriesNotFoundError:
            continue
        config = attrs.get("medpipe", {}).get("preprocess", {}).get("config")
        if config is not None:
            return dict(config)
    return None


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def domain_problems(domain: Mapping[str, Any], attrs: Mapping[str, Any]) -> list[str]:
    """Why an ingested series is outside a model's training domain (empty: it is inside).

    Parameters
    ----------
    domain
        ``model.json``'s ``domain`` (:func:`training_domain`).
    attrs
        The series' ``medpipe`` attributes (``modality``, ``axes``, ``shape``,
        ``labels``).

    Returns
    -------
    list of str
        One sentence per problem: the modality, 2D/3D, channels, an image size outside
        the training range, a time series, or whole images where the model saw ROIs
        (and the reverse).
    """
    out: list[str] = []
    modality = str(attrs.get("modality") or "unknown")
    trained = list(domain.get("modalities", []))
    if trained and modality not in trained:
        out.append(f"modality {modality}: the model was trained on {', '.join(trained)} "
                   "images only")
    geom = geometry_of(attrs)
    if geom["time"]:
        out.append("a time series (t axis): the model was trained on still images")
    dims = list(domain.get("dims", []))
    dims_ok = not dims or geom["dims"] in dims
    if not dims_ok:
        trained_dims = " and ".join(f"{d}D" for d in dims)
        out.append(f"a {geom['dims']}D image ({geom['size']['z']} slices): the model was "
                   f"trained on {trained_dims} images")
    channels = list(domain.get("channels", []))
    if channels and geom["channels"] not in channels:
        out.append(f"{geom['channels']} channel(s): the model was trained on images with "
                   f"{' or '.join(map(str, channels))} channel(s)")
    for axis, (lo, hi) in (domain.get("size") or {}).items():
        n = geom["size"].get(axis, 1)
        if not lo <= n <= hi and (axis != "z" or dims_ok):  # 2D vs 3D is said above
            out.append(f"{axis} size {n} voxels is outside the training range {_span(lo, hi)}")
    samples = domain.get("samples")
    has_roi = bool(attrs.get("labels"))
    if samples == "roi" and not has_roi:
        out.append("no ROI mask: the model was trained on ROI samples")
    elif samples == "whole image" and has_roi:
        out.append(f"ROI masks ({', '.join(attrs.get('labels', []))}): the model was "
                   "trained on whole images")
    return out
