"""Ingest step 3: read each planned series and write it atomically to the store."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da

import medpipe
from medpipe import store as _store
from medpipe.deid import file_key, pseudonym, redact_paths
from medpipe.errors import SourceError
from medpipe.ingest.planning import GroupPlan, _one_line, _row
from medpipe.io import read_group
from medpipe.io.base import Series
from medpipe.io.registry import get_reader
from medpipe.store import outputs as _outputs

__all__ = ["IMAGES", "series_attrs", "ingest_group", "ingest_batch"]

log = logging.getLogger(__name__)

#: The store group holding one OME-Zarr image per series (:data:`medpipe.store.layout.IMAGES`).
IMAGES = _store.layout.IMAGES


def series_attrs(
    series: Series, *, key: str, secret: bytes, hashes: Sequence[str], run_id: str
) -> dict[str, Any]:
    """The de-identified attributes stored with an ingested series.

    Parameters
    ----------
    series
        The series as read.
    key
        Its pseudonymous series key (the store path's last part).
    secret
        Pseudonymisation secret.
    hashes
        Content hashes of the source files.
    run_id
        Id of the ingest run.

    Returns
    -------
    dict
        JSON-serialisable; holds keyed hashes, never raw identifiers or paths.
    """

    def hashed(value: str | None, kind: str) -> str | None:
        return pseudonym(value, secret=secret, kind=kind) if value else None

    return {
        "series_key": key,
        # The keyed hash of the SeriesInstanceUID itself: equal to ``series_key`` except
        # where one DICOM series became several store series (unpositioned images,
        # multi-frame objects).  Labels keyed by SeriesInstanceUID join on it.
        "series_uid_key": hashed(series.uid, "series"),
        "study_key": hashed(series.study_uid, "study"),
        "patient_key": hashed(series.patient_id, "patient"),
        "modality": series.modality,
        "shape": [int(n) for n in series.data.shape],
        "dtype": str(series.data.dtype),
        "rescale": series.rescale,
        "header": series.header,
        "labels": sorted(series.labels),
        "source_hashes": sorted(hashes),
        "source_count": len(hashes),
        "ingest_run": run_id,
        "medpipe_version": medpipe.__version__,
    }


def ingest_group(
    archive: str, store: str, group: GroupPlan, *, secret: bytes, run_id: str
) -> list[dict[str, Any]]:
    """Read one series and write it atomically to ``images/<series-key>``.

    Parameters
    ----------
    archive
        Archive root.
    store
        Store URL or path.
    group
        The series to read (see :func:`plan`).
    secret
        Pseudonymisation secret.
    run_id
        Id of the ingest run.

    Returns
    -------
    list of dict
        Catalog rows for the group's files: ``ingested``; ``skipped`` for files the
        reader left out (e.g. a second copy of a SOP instance); or ``quarantined`` with
        the reason (the file at fault gets the specific reason, its siblings point to it
        by its file key: no reason holds an archive path).
    """
    members = [(m["path"], m["role"]) for m in group.members]
    dropped: dict[str, str] = {}
    rejected: dict[str, str] = {}

    def clean(text: str) -> str:  # no archive path in a reason: the file keys instead
        return redact_paths(text, [p for p, _ in members], secret=secret, archive=archive)

    try:
        serieses = read_group(archive, group.kind, members, reader=group.reader)
    except Exception as err:  # noqa: BLE001 - bad input never stops the batch
        return _quarantine_group(group, err, clean=clean, secret=secret)
    per_image = (group.reader or get_reader(group.kind)).series_per_image
    # Store errors are not the input's fault: they propagate, the task fails (and is
    # retried), no catalog row is written, and a rerun picks the series up again.
    hashes = [m["sha256"] for m in group.members if m.get("sha256")]
    _outputs.ensure_index(store)  # a new store is indexed from its first series on
    keys = []
    for s in serieses:
        dropped.update(s.dropped)
        rejected.update(s.rejected)
        # One series per group keeps the group's key; a many-image file (npz) keys
        # each image by its own identifier.
        key = pseudonym(s.uid, secret=secret, kind="series") if per_image else group.series
        try:
            _write_series(
                s, store, key, series_attrs(s, key=key, secret=secret, hashes=hashes, run_id=run_id)
            )
        except SourceError as err:  # a streamed series decodes its files while written
            return _quarantine_group(group, err, clean=clean, secret=secret)
        keys.append(key)
    _outputs.record_images(store, IMAGES, keys, run_id=run_id)

    def outcome(path: str) -> tuple[str, str | None]:
        if path in rejected:
            return "quarantined", _one_line(clean(rejected[path]))
        if path in dropped:  # a skipped file's reason stays in the catalog: it may name
            return "skipped", dropped[path]  # the copy that was used, for the operator
        return "ingested", None

    rows = []
    for m in group.members:
        status, reason = outcome(m["path"])
        rows.append(_row(m, series=group.series, kind=group.kind, status=status, reason=reason))
    return rows


def _write_series(s: Series, store: str, key: str, attrs: dict[str, Any]) -> None:
    """Write one series; a lazily read (streamed) one is computed slab by slab right here.

    A streamed series (:mod:`medpipe.io.dicom.slabs`) is a dask array whose blocks
    read their files: the synchronous scheduler computes it inside this task, one
    slab at a time, instead of sending its graph to the cluster.
    """
    lazy = isinstance(s.data, da.Array)
    with dask.config.set(scheduler="synchronous") if lazy else contextlib.nullcontext():
        _store.write_image(
            s.data,
            store=store,
            path=_store.layout.image(key),
            axes=s.axes,
            spacing=s.spacing,
            origin=s.origin,
            direction=s.direction,
            labels=s.labels,
            attrs=attrs,
        )


def _quarantine_group(
    group: GroupPlan, err: Exception, *, clean: Any, secret: bytes
) -> list[dict[str, Any]]:
    """Catalog rows quarantining a group: the culprit gets the reason, siblings point to it.

    A sibling's reason names the culprit by its file key (:func:`medpipe.deid.file_key`),
    and ``clean`` takes every archive path out of the reason and the logged traceback.
    """
    culprit = getattr(err, "path", None)
    if isinstance(err, SourceError):
        reason = err.reason
    else:
        log.warning(
            "series %s failed unexpectedly:\n%s", group.series, clean(traceback.format_exc())
        )
        reason = f"{type(err).__name__}: {err}"
    reason = _one_line(clean(reason))
    culprit_key = file_key(culprit, secret=secret) if culprit else None
    return [
        _row(
            m,
            series=group.series,
            kind=group.kind,
            status="quarantined",
            reason=reason
            if culprit in (None, m["path"])
            else f"series not ingested: {culprit_key}: {reason}",
        )
        for m in group.members
    ]


def ingest_batch(
    archive: str, store: str, groups: Sequence[GroupPlan], *, secret: bytes, run_id: str
) -> list[dict[str, Any]]:
    """Ingest a batch of series (:func:`ingest_group` for each); returns all catalog rows."""
    rows: list[dict[str, Any]] = []
    for g in groups:
        rows.extend(ingest_group(archive, store, g, secret=secret, run_id=run_id))
    return rows
