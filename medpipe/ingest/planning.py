"""Ingest: the archive → catalog → de-identified OME-Zarr stage.

Three pure steps, each small enough for a Prefect task to wrap in a line:

1. :func:`probe_batch` hashes and header-reads the new or changed files of a scan
   and gives each its reader, role and pseudonymous series key.
2. :func:`plan` groups probed files, plus the unchanged files already catalogued
   under the same series key, into per-series :class:`GroupPlan`\\ s.
3. :func:`ingest_batch` reads each group, writes it atomically to
   ``images/<series-key>`` and returns the catalog rows for its files.

Raw identifiers (UIDs, patient IDs) exist only inside these functions; what they
return and write carries keyed hashes only.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import medpipe
from medpipe import catalog
from medpipe import store as _store
from medpipe.catalog import FileStat, content_hash
from medpipe.deid import pseudonym
from medpipe.errors import SourceError, UnsupportedSourceError
from medpipe.io import probe_file, read_group
from medpipe.io.base import Series

__all__ = [
    "GroupPlan",
    "IngestSummary",
    "probe_batch",
    "plan",
    "batches",
    "ingest_batch",
    "ingest_group",
    "summarize",
    "series_attrs",
    "IMAGES",
    "ingest_archive",
    "missing_rows",
]

log = logging.getLogger(__name__)

#: Store group holding one OME-Zarr image per series.
IMAGES = "images"


@dataclass
class GroupPlan:
    """One series to (re-)ingest: its key, reader and member files with their stats.

    ``members`` rows are catalog-shaped dicts (``path``, ``size``, ``mtime_ns``,
    ``sha256``, ``role``); no raw identifier is held here, so plans can travel
    between processes and through Prefect.
    """

    series: str
    kind: str
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Total size of the member files."""
        return sum(int(m["size"]) for m in self.members)


@dataclass
class IngestSummary:
    """Counts of one ingest run, for printing and for Prefect artifacts."""

    run_id: str
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    missing: int = 0
    series_ingested: int = 0
    files_ingested: int = 0
    quarantined: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable)."""
        return asdict(self)


def _row(f: FileStat | Mapping[str, Any], **values: Any) -> dict[str, Any]:
    base = asdict(f) if isinstance(f, FileStat) else dict(f)
    keep = {
        k: base.get(k) for k in ("path", "size", "mtime_ns", "sha256", "series", "kind", "role")
    }
    keep.update(values)
    return keep


def probe_batch(archive: str, files: Sequence[FileStat], *, secret: bytes) -> list[dict[str, Any]]:
    """Hash and header-read a batch of new or changed files.

    Parameters
    ----------
    archive
        Archive root.
    files
        Files from :func:`medpipe.catalog.scan` that need a look.
    secret
        Pseudonymisation secret.

    Returns
    -------
    list of dict
        One catalog-shaped row per file.  ``status`` is ``"pending"`` for files that
        go on to :func:`plan`, or ``"quarantined"`` / ``"skipped"`` with a ``reason``.
    """
    rows = []
    root = Path(archive)
    for f in files:
        try:
            digest = content_hash(root / f.path)
        except OSError as err:
            rows.append(_row(f, status="quarantined", reason=f"cannot read file: {err.strerror}"))
            continue
        try:
            probe = probe_file(root, f.path)
        except UnsupportedSourceError as err:
            rows.append(_row(f, sha256=digest, status="skipped", reason=err.reason))
            continue
        except SourceError as err:
            rows.append(_row(f, sha256=digest, status="quarantined", reason=err.reason))
            continue
        except Exception as err:  # noqa: BLE001 - a bad file must never stop the run
            log.debug("probe of %s failed:\n%s", f.path, traceback.format_exc())
            rows.append(
                _row(
                    f,
                    sha256=digest,
                    status="quarantined",
                    reason=_one_line(f"unreadable: {type(err).__name__}: {err}"),
                )
            )
            continue
        if probe.role == "index":
            rows.append(
                _row(
                    f,
                    sha256=digest,
                    kind=probe.kind,
                    role=probe.role,
                    status="skipped",
                    reason="DICOMDIR index (its files are scanned)",
                )
            )
            continue
        key = pseudonym(probe.group, secret=secret, kind="series")
        rows.append(
            _row(
                f,
                sha256=digest,
                kind=probe.kind,
                role=probe.role,
                series=key,
                status="pending",
                reason=None,
            )
        )
    return rows


def plan(probed: Iterable[Mapping[str, Any]], catalog: pd.DataFrame) -> list[GroupPlan]:
    """Group probed files into series to ingest, with their unchanged catalogued siblings.

    Parameters
    ----------
    probed
        Rows from :func:`probe_batch`; only ``status == "pending"`` rows are planned.
    catalog
        The catalog's current view (:func:`medpipe.catalog.current`).  Files already
        catalogued under a touched series key, and not changed in this run, are
        added so a series is always read whole.

    Returns
    -------
    list of GroupPlan
        Sorted by series key.
    """
    groups: dict[str, GroupPlan] = {}
    fresh: set[str] = set()
    for row in probed:
        if row["status"] != "pending":
            continue
        g = groups.setdefault(row["series"], GroupPlan(series=row["series"], kind=row["kind"]))
        g.members.append(_row(row))
        fresh.add(row["path"])
    if groups and not catalog.empty:
        old = catalog[
            catalog["series"].isin(list(groups))
            & catalog["status"].isin(["ingested", "quarantined"])
            & ~catalog["path"].isin(list(fresh))
        ]
        for rec in old.to_dict("records"):
            groups[rec["series"]].members.append(_row(rec))
    for g in groups.values():
        g.members.sort(key=lambda m: m["path"])
    return [groups[k] for k in sorted(groups)]


#: Work of one file in a batch, in source-byte equivalents: ingest time is mostly
#: per file (header parse, geometry, a plane to write), not per byte, for slices.
_FILE_COST = 256 << 10


def batches(
    plans: Sequence[GroupPlan], *, n: int, max_bytes: int = 512 << 20
) -> list[list[GroupPlan]]:
    """Split plans into about ``n`` batches of similar work (for one task each).

    The work of a series is estimated from its bytes plus a fixed cost per file; the
    largest series are placed first, each into the lightest batch (longest-processing
    -time-first), so batches end at about the same time.

    Parameters
    ----------
    plans
        Series plans.
    n
        Target number of batches (e.g. a few per worker, for load balance).
    max_bytes
        Upper bound of source bytes in one batch, so huge archives still get
        batches a worker can hold (a single larger series gets a batch of its own).

    Returns
    -------
    list of list of GroupPlan
        Heaviest batch first; series in key order within a batch.
    """
    if not plans:
        return []

    def cost(p: GroupPlan) -> int:
        return p.nbytes + _FILE_COST * len(p.members)

    n = max(1, min(n, len(plans)))
    n = max(n, math.ceil(sum(p.nbytes for p in plans) / max_bytes))
    work = [0] * n
    size = [0] * n
    out: list[list[GroupPlan]] = [[] for _ in range(n)]
    for p in sorted(plans, key=lambda p: (-cost(p), p.series)):
        fits = [i for i in range(n) if not out[i] or size[i] + p.nbytes <= max_bytes]
        if not fits:
            work.append(0)
            size.append(0)
            out.append([])
            fits = [len(out) - 1]
        i = min(fits, key=lambda i: (work[i], i))
        out[i].append(p)
        work[i] += cost(p)
        size[i] += p.nbytes
    order = sorted((i for i in range(len(out)) if out[i]), key=lambda i: -work[i])
    return [sorted(out[i], key=lambda p: p.series) for i in order]


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
        the reason (the file at fault gets the specific reason, its siblings point to it).
    """
    members = [(m["path"], m["role"]) for m in group.members]
    dropped: dict[str, str] = {}
    rejected: dict[str, str] = {}
    try:
        serieses = read_group(archive, group.kind, members)
    except Exception as err:  # noqa: BLE001 - bad input never stops the batch
        return _quarantine_group(group, err)
    # Store errors are not the input's fault: they propagate, the task fails (and is
    # retried), no catalog row is written, and a rerun picks the series up again.
    hashes = [m["sha256"] for m in group.members if m.get("sha256")]
    for s in serieses:
        dropped.update(s.dropped)
        rejected.update(s.rejected)
        # One series per group keeps the group's key; a many-image file (npz) keys
        # each image by its own identifier.
        key = (
            group.series if group.kind != "npz" else pseudonym(s.uid, secret=secret, kind="series")
        )
        _store.write_image(
            s.data,
            store=store,
            path=f"{IMAGES}/{key}",
            axes=s.axes,
            spacing=s.spacing,
            origin=s.origin,
            direction=s.direction,
            labels=s.labels,
            attrs=series_attrs(s, key=key, secret=secret, hashes=hashes, run_id=run_id),
        )

    def outcome(path: str) -> tuple[str, str | None]:
        if path in rejected:
            return "quarantined", _one_line(rejected[path])
        if path in dropped:
            return "skipped", dropped[path]
        return "ingested", None

    rows = []
    for m in group.members:
        status, reason = outcome(m["path"])
        rows.append(_row(m, series=group.series, kind=group.kind, status=status, reason=reason))
    return rows


def _quarantine_group(group: GroupPlan, err: Exception) -> list[dict[str, Any]]:
    """Catalog rows quarantining a group: the culprit gets the reason, siblings point to it."""
    culprit = getattr(err, "path", None)
    if isinstance(err, SourceError):
        reason = err.reason
    else:
        log.warning("series %s failed unexpectedly:\n%s", group.series, traceback.format_exc())
        reason = f"{type(err).__name__}: {err}"
    reason = _one_line(reason)
    return [
        _row(
            m,
            series=group.series,
            kind=group.kind,
            status="quarantined",
            reason=reason
            if culprit in (None, m["path"])
            else f"series not ingested: {culprit}: {reason}",
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


def summarize(summary: IngestSummary, rows: Iterable[Mapping[str, Any]]) -> IngestSummary:
    """Add a batch's catalog rows to the run's counts (in place; returns it)."""
    series = set()
    for r in rows:
        status = r["status"]
        if status == "ingested":
            summary.files_ingested += 1
            series.add(r["series"])
        elif status in ("quarantined", "skipped"):
            setattr(summary, status, getattr(summary, status) + 1)
            if status == "quarantined":
                reason = str(r.get("reason") or "")
                summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
    summary.series_ingested += len(series)
    return summary


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def ingest_archive(
    archive: str,
    store: str,
    *,
    secret: bytes,
    limit: int | None = None,
    run_id: str | None = None,
) -> IngestSummary:
    """Ingest an archive in this process, without Prefect or Dask.

    The same steps as ``flows/ingest.py`` run one after another: a single-process path
    for debugging, notebooks and tests.  Catalog rows are appended per series, so an
    interrupted run loses at most the series being written.

    Parameters
    ----------
    archive
        Archive root.
    store
        Store URL or path.
    secret
        Pseudonymisation secret.
    limit
        Only the first ``limit`` files in path order.
    run_id
        Defaults to a new id.

    Returns
    -------
    IngestSummary
    """
    run_id = run_id or catalog.new_run_id()
    files = catalog.scan(archive, limit=limit)
    known = catalog.current(store)
    delta = catalog.diff(files, known)
    summary = IngestSummary(
        run_id=run_id,
        scanned=len(files),
        unchanged=delta.unchanged,
        new=len(delta.new),
        changed=len(delta.changed),
        missing=len(delta.missing),
    )
    catalog.append(store, missing_rows(delta), run_id=run_id)
    probed = probe_batch(archive, delta.todo, secret=secret)
    settled = [r for r in probed if r["status"] != "pending"]
    catalog.append(store, settled, run_id=run_id)
    summarize(summary, settled)
    for group in plan(probed, known):
        rows = ingest_group(archive, store, group, secret=secret, run_id=run_id)
        catalog.append(store, rows, run_id=run_id)
        summarize(summary, rows)
    return summary


def missing_rows(delta: catalog.Diff) -> list[dict[str, Any]]:
    """Catalog rows for files that disappeared from the archive (their images are kept)."""
    return [
        {"path": p, "status": "missing", "reason": "no longer in archive"} for p in delta.missing
    ]
