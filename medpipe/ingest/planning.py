"""Ingest steps 1 and 2: probe new or changed files, group them into series plans.

Raw identifiers (UIDs) exist only inside these functions; what they return carries
keyed hashes only.
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

from medpipe.catalog import FileStat, content_hash
from medpipe.deid import file_key, pseudonym, redact_paths
from medpipe.errors import SourceError, UnsupportedSourceError
from medpipe.io import probe_file
from medpipe.io.registry import REGISTRY, Reader, ReaderRegistry

__all__ = ["GroupPlan", "probe_batch", "plan", "batches"]

log = logging.getLogger(__name__)


@dataclass
class GroupPlan:
    """One series to (re-)ingest: its key, reader and member files with their stats.

    ``members`` rows are catalog-shaped dicts (``path``, ``size``, ``mtime_ns``,
    ``sha256``, ``role``); no raw identifier is held here, so plans can travel
    between processes and through Prefect.  ``reader`` is the reader object itself
    (set by :func:`plan`): a worker process reads the group with it even when its own
    registry does not hold that reader (one registered at run time, e.g. by a test).
    """

    series: str
    kind: str
    members: list[dict[str, Any]] = field(default_factory=list)
    reader: Reader | None = field(default=None, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        """Total size of the member files."""
        return sum(int(m["size"]) for m in self.members)


def _row(f: FileStat | Mapping[str, Any], **values: Any) -> dict[str, Any]:
    base = asdict(f) if isinstance(f, FileStat) else dict(f)
    keep = {
        k: base.get(k)
        for k in ("path", "size", "mtime_ns", "meta", "sha256", "series", "kind", "role")
    }
    keep.update(values)
    return keep


def probe_batch(
    archive: str,
    files: Sequence[FileStat],
    *,
    secret: bytes,
    registry: ReaderRegistry | None = None,
) -> list[dict[str, Any]]:
    """Hash and header-read a batch of new or changed files.

    Parameters
    ----------
    archive
        Archive root.
    files
        Files from :func:`medpipe.catalog.scan` that need a look.
    secret
        Pseudonymisation secret.
    registry
        Readers to choose from (default: this process's registry).  Work sent to other
        processes passes a :meth:`~medpipe.io.registry.ReaderRegistry.snapshot` of the
        sender's.

    Returns
    -------
    list of dict
        One catalog-shaped row per file.  ``status`` is ``"pending"`` for files that
        go on to :func:`plan`, or ``"quarantined"`` / ``"skipped"`` with a ``reason``
        (in which an archive path shows only as its file key,
        :func:`medpipe.deid.file_key`).
    """
    rows = []
    root = Path(archive)
    for f in files:

        def clean(text: str, f: FileStat = f) -> str:  # no archive path in a reason
            return redact_paths(text, [f.path], secret=secret, archive=archive)

        try:
            digest = content_hash(root / f.path)
        except OSError as err:
            rows.append(_row(f, status="quarantined", reason=f"cannot read file: {err.strerror}"))
            continue
        try:
            probe = probe_file(root, f.path, registry=registry)
        except UnsupportedSourceError as err:
            rows.append(_row(f, sha256=digest, status="skipped", reason=clean(err.reason)))
            continue
        except SourceError as err:
            rows.append(_row(f, sha256=digest, status="quarantined", reason=clean(err.reason)))
            continue
        except Exception as err:  # noqa: BLE001 - a bad file must never stop the run
            log.debug(
                "probe of %s failed:\n%s",
                file_key(f.path, secret=secret),
                clean(traceback.format_exc()),
            )
            rows.append(
                _row(
                    f,
                    sha256=digest,
                    status="quarantined",
                    reason=_one_line(clean(f"unreadable: {type(err).__name__}: {err}")),
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


def plan(
    probed: Iterable[Mapping[str, Any]],
    catalog: pd.DataFrame,
    *,
    registry: ReaderRegistry | None = None,
) -> list[GroupPlan]:
    """Group probed files into series to ingest, with their unchanged catalogued siblings.

    Parameters
    ----------
    probed
        Rows from :func:`probe_batch`; only ``status == "pending"`` rows are planned.
    catalog
        The catalog's current view (:func:`medpipe.catalog.current`).  Files already
        catalogued under a touched series key, and not changed in this run, are
        added so a series is always read whole.
    registry
        Where each plan's ``reader`` comes from (default: this process's registry).

    Returns
    -------
    list of GroupPlan
        Sorted by series key.
    """
    readers = registry or REGISTRY
    groups: dict[str, GroupPlan] = {}
    fresh: set[str] = set()
    for row in probed:
        if row["status"] != "pending":
            continue
        g = groups.get(row["series"])
        if g is None:
            reader = readers.get(row["kind"]) if row["kind"] in readers.names else None
            g = groups[row["series"]] = GroupPlan(row["series"], row["kind"], reader=reader)
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


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
