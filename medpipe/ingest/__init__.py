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

Modules: :mod:`~medpipe.ingest.planning` (steps 1 and 2), :mod:`~medpipe.ingest.writing`
(step 3), :mod:`~medpipe.ingest.isolation` (a batch whose worker died is bisected on
fresh processes; the file that kills its process is quarantined) and
:mod:`~medpipe.ingest.run` (a whole run without Prefect, its summary).
"""

from __future__ import annotations

from medpipe.ingest.isolation import DECODE_TIMEOUT_S, is_worker_death, isolate_batch
from medpipe.ingest.planning import GroupPlan, batches, plan, probe_batch
from medpipe.ingest.run import (
    IngestSummary,
    check_fetched,
    ingest_archive,
    ingest_files,
    missing_rows,
    stage_groups,
    start_summary,
    summarize,
)
from medpipe.ingest.writing import IMAGES, ingest_batch, ingest_group, series_attrs

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
    "ingest_files",
    "missing_rows",
    "start_summary",
    "stage_groups",
    "check_fetched",
    "isolate_batch",
    "is_worker_death",
    "DECODE_TIMEOUT_S",
]
