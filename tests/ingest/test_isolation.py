"""A file that kills its decoder process is quarantined; the rest of its batch is ingested.

A test-only hook reader wraps the real DICOM reader and sends its own process SIGSEGV
(or hangs) when it reads one named real file.  The hook travels to the Dask workers and
to the isolation processes inside the plans, as any run-time reader does.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medpipe import catalog, ingest
from medpipe.ingest.isolation import Crash, bisect, crash_reason, is_worker_death, run_in_child
from medpipe.io import register_reader
from medpipe.io.base import Series
from medpipe.io.dicom import DicomReader

SECRET = b"isolation-test-secret"
KILLER = "b/killer.dcm"
#: Seconds per series in the hanging-decoder test: the hang is only ever cut by this, so
#: the test waits 3 × this; a spawned child imports medpipe and ingests a small real
#: file in ~2–6 s on 2 busy cores.
HANG_TIMEOUT_S = 8


class KillingDicomReader(DicomReader):
    """The real DICOM reader, except that reading :data:`KILLER` kills the process."""

    how = "segv"

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        if KILLER in images:
            if self.how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(3600)  # a decoder that never returns
        return super().read(root, images, masks)


class HangingDicomReader(KillingDicomReader):
    how = "hang"


def _hook(reader: DicomReader) -> Iterator[DicomReader]:
    original = DicomReader()
    register_reader(reader, replace=True)
    try:
        yield reader
    finally:
        register_reader(original, replace=True)


@pytest.fixture
def killing() -> Iterator[DicomReader]:
    yield from _hook(KillingDicomReader())


@pytest.fixture
def hanging() -> Iterator[DicomReader]:
    yield from _hook(HangingDicomReader())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Three single-file real series: two good ones and the killer (in that order)."""
    root = tmp_path / "archive"
    for rel, name in (("a/ct.dcm", "CT_small.dcm"), (KILLER, "MR_small.dcm")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), root / rel)
    # a third series: the real MR as another series (its own UIDs)
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    (root / "c").mkdir()
    ds.save_as(root / "c/mr.dcm")
    return root


def test_bisect_finds_every_crashing_item() -> None:
    calls: list[list[int]] = []

    def run(part: Sequence[int]) -> list[int] | Crash:
        calls.append(list(part))
        if any(i in (3, 6) for i in part):
            return Crash("boom")
        return [i * 10 for i in part]

    results, crashed = bisect(list(range(8)), run)
    assert sorted(results) == [0, 10, 20, 40, 50, 70]
    assert crashed == [(3, "boom"), (6, "boom")]
    assert calls[0] == list(range(8))
    assert bisect([], run) == ([], [])


def test_crash_reasons() -> None:
    assert crash_reason(-11) == "decoder process died (signal 11)"
    assert crash_reason(-9) == "decoder process died (signal 9)"
    assert crash_reason(3) == "decoder process died (exit code 3)"
    assert crash_reason(None, timeout_s=60) == "decode exceeded 60 s"
    from distributed import KilledWorker

    assert is_worker_death(KilledWorker("task", "worker", 0))
    assert not is_worker_death(ValueError("bad pixel data"))


def test_run_in_child_reports_signal_and_errors() -> None:
    assert run_in_child(pow, 2, 10, timeout_s=60) == 1024
    with pytest.raises(ZeroDivisionError):
        run_in_child(divmod, 1, 0, timeout_s=60)
    died = run_in_child(os._exit, 7, timeout_s=60)
    assert died == Crash("decoder process died (exit code 7)")


def _rows(store: Path) -> pd.DataFrame:
    return catalog.current(str(store)).set_index("path")


@pytest.mark.slow
def test_killing_file_is_quarantined_on_a_local_cluster(
    archive: Path, tmp_path: Path, killing: DicomReader
) -> None:
    import dask
    from distributed import Client, LocalCluster

    store = tmp_path / "store.zarr"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        summary = ingest.ingest_archive(str(archive), str(store), secret=SECRET, client=client)
    rows = _rows(store)
    assert set(rows.index) == {"a/ct.dcm", KILLER, "c/mr.dcm"}
    assert rows.loc[KILLER, "status"] == "quarantined"
    assert rows.loc[KILLER, "reason"] == "decoder process died (signal 11)"
    assert rows.loc["a/ct.dcm", "status"] == "ingested"
    assert rows.loc["c/mr.dcm", "status"] == "ingested"
    assert summary.quarantined == 1 and summary.files_ingested == 2
    assert summary.reasons == {"decoder process died (signal 11)": 1}

    # the next run does not retry the file: it is unchanged (size, mtime, hash)
    again = ingest.ingest_archive(str(archive), str(store), secret=SECRET)
    assert (again.unchanged, again.new, again.changed) == (3, 0, 0)
    # ... until it changes: touched, it is retried (in process: no kill, the real reader)
    register_reader(DicomReader(), replace=True)
    st = (archive / KILLER).stat()
    os.utime(archive / KILLER, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = ingest.ingest_archive(str(archive), str(store), secret=SECRET)
    assert third.changed == 1 and third.files_ingested == 1
    assert _rows(store).loc[KILLER, "status"] == "ingested"


@pytest.mark.slow
def test_hanging_decoder_is_quarantined_with_timeout(
    archive: Path, tmp_path: Path, hanging: DicomReader
) -> None:
    plans = [p for p in _plans(archive) if p.members[0]["path"] != "c/mr.dcm"]
    assert len(plans) == 2
    # the pair times out after 2 × HANG_TIMEOUT_S, then each series runs on its own: the
    # good one must finish within HANG_TIMEOUT_S in a spawned child (imports included)
    rows = ingest.isolate_batch(
        str(archive), str(tmp_path / "s.zarr"), plans, secret=SECRET, run_id="r1",
        timeout_s=HANG_TIMEOUT_S,
    )
    by_path = {r["path"]: r for r in rows}
    assert by_path[KILLER]["status"] == "quarantined"
    assert by_path[KILLER]["reason"] == f"decode exceeded {HANG_TIMEOUT_S} s"
    assert by_path[KILLER]["sha256"] and by_path[KILLER]["size"]
    assert by_path["a/ct.dcm"]["status"] == "ingested"


def _plans(archive: Path) -> list[ingest.GroupPlan]:
    files = catalog.scan(str(archive))
    probed = ingest.probe_batch(str(archive), files, secret=SECRET)
    return ingest.plan(probed, catalog.current(str(archive / "none.zarr")))
