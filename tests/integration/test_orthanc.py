"""Ingest from a real Orthanc PACS over DICOMweb (``make orthanc``).

Orthanc is started by the Makefile target on a free localhost port (installing Debian's
``orthanc`` and ``orthanc-dicomweb`` first when they are missing) and stopped at the end
of the module by its PID file.  A server that cannot start fails the test with the
target's output; it is never skipped.

The archive is pydicom's CT and MR test files, plus one patient of the IBSI sarcoma
archive where the shared data is present.  They are uploaded through Orthanc's REST API
(``POST /instances``).  Every HTTP request medpipe sends is counted through a wrapper of
``requests.Session.send`` (the transport ``dicomweb-client`` uses), and classified as
WADO-RS (pixel data: ``Accept: multipart/related; type="application/dicom"``) or QIDO-RS
(``application/dicom+json``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from medpipe import catalog
from medpipe import store as st
from medpipe.errors import ArchiveError
from medpipe.ingest import ingest_archive
from medpipe.sources.dicomweb import DicomwebSource
from tests.conftest import REPO, shared_data_dir
from tests.integration.conftest import free_port

SECRET = b"orthanc-test-secret"
FIRST = ("CT_small.dcm", "MR_small.dcm")
#: A new study (another patient) that arrives after the first nights.
LATER = "JPEG2000.dcm"
IBSI_PATIENT = "dicom/ibsi_sts/STS_002"
#: Attributes that differ between any two ingest runs, or with the files' bytes:
#: WADO-RS returns each instance as a dataset that is written out again, so the source
#: files' SHA-256 may differ although every element and pixel is the same.
RUN_ATTRS = {"ingest_run", "written_at", "source_hashes"}


def make(target: str, args: list[str], env: dict[str, str] | None = None) -> None:
    """Run a Makefile target; fail the test with its output when it fails."""
    out = subprocess.run(
        ["make", "-s", target, *args], cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        pytest.fail(f"make {target} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")


@contextmanager
def running_orthanc(state: Path, env: dict[str, str] | None = None) -> Iterator[list[str]]:
    """``make orthanc`` on a free port; yields the make arguments; ``make orthanc-stop`` after."""
    args = [f"ORTHANC_PORT={free_port()}", f"ORTHANC_DIR={state}"]
    try:
        make("orthanc", args, env)
        yield args
    finally:
        subprocess.run(["make", "-s", "orthanc-stop", *args], cwd=REPO, timeout=60)
        assert not (state / "orthanc.pid").exists()


def rest_root(args: list[str]) -> str:
    """Orthanc's REST root for its make arguments."""
    return f"http://127.0.0.1:{args[0].split('=')[1]}"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Orthanc for the module's archive tests; yields its REST root."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as args:
        yield rest_root(args)


@pytest.fixture
def http_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every request medpipe sends through ``requests``: (method, path, accept)."""
    seen: list[tuple[str, str, str]] = []
    send = requests.Session.send

    def counting(self: requests.Session, request: requests.PreparedRequest, **kw: object):
        accept = request.headers.get("Accept", "")
        seen.append((request.method or "", requests.utils.urlparse(request.url).path, accept))
        return send(self, request, **kw)

    monkeypatch.setattr(requests.Session, "send", counting)
    return seen


def wado(log: list[tuple[str, str, str]]) -> list[str]:
    """The WADO-RS retrievals (pixel data) among the logged requests."""
    return [p for _, p, accept in log if "application/dicom" in accept and "json" not in accept]


def qido(log: list[tuple[str, str, str]]) -> list[str]:
    """The QIDO-RS searches (metadata) among the logged requests."""
    return [p for _, p, accept in log if "dicom+json" in accept]


def upload(rest: str, files: list[Path]) -> None:
    """Store instances in Orthanc through its REST API."""
    for f in files:
        r = requests.post(f"{rest}/instances", data=f.read_bytes(), timeout=60)
        r.raise_for_status()


def first_files() -> list[Path]:
    """pydicom's CT and MR files, plus an IBSI patient (CT, MR, PET, RTSTRUCT) if present."""
    files = [Path(get_testdata_file(n)) for n in FIRST]
    ibsi = shared_data_dir() / IBSI_PATIENT
    if ibsi.is_dir():
        files += sorted(p for p in ibsi.rglob("*") if p.is_file() and p.suffix == ".dcm")
    return files


def folder_of(files: list[Path], root: Path) -> Path:
    """The same files as a local archive folder."""
    root.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, root / f"{i:04d}_{f.name}")
    return root


def assert_same_series(a: str, b: str, *, ignore: set[str] = RUN_ATTRS) -> None:
    """Two stores hold the same series: keys, voxels, masks and attributes."""
    keys = st.list_groups(a, "images")
    assert keys and keys == st.list_groups(b, "images")
    for k in keys:
        x, y = st.open_image(a, k), st.open_image(b, k)
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.array_equal(x.values, y.values), k
        la, lb = st.open_labels(a, k), st.open_labels(b, k)
        assert la.keys() == lb.keys()
        for name in la:
            assert np.array_equal(la[name].values, lb[name].values), (k, name)
        ma, mb = st.read_attrs(a, k), st.read_attrs(b, k)
        ma, mb = ma.get("medpipe", ma), mb.get("medpipe", mb)
        assert {n: v for n, v in ma.items() if n not in ignore} == {
            n: v for n, v in mb.items() if n not in ignore
        }, k


def test_dicomweb_ingest_equals_folder_and_is_incremental(
    orthanc: str, http_log: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    files = first_files()
    upload(orthanc, files)
    url = f"dicomweb+{orthanc}/dicom-web"
    dw, local = str(tmp_path / "dw.zarr"), str(tmp_path / "local.zarr")

    # 1. the same series as the folder ingest of the same files
    first = ingest_archive(url, dw, secret=SECRET, concurrency=2)
    assert first.new == first.scanned == len(files)
    assert first.quarantined == 0
    series = len({(p.split("/")[1]) for p in catalog.current(dw)["path"]})
    assert len(wado(http_log)) == series  # one WADO-RS request per series
    ref = ingest_archive(str(folder_of(files, tmp_path / "folder")), local, secret=SECRET)
    assert ref.series_ingested == first.series_ingested > 0
    assert_same_series(dw, local)
    # the catalog keys each instance on its SOPInstanceUID, with its metadata hash
    cat = catalog.current(dw)
    assert all(p.endswith(".dcm") and p.count("/") == 2 for p in cat["path"])
    assert cat["meta"].str.fullmatch(r"[0-9a-f]{64}").all()
    # one instance's bytes (WADO-RS instance retrieval), as stored
    want = pydicom.dcmread(files[0])
    key = next(p for p in cat["path"] if p.endswith(f"/{want.SOPInstanceUID}.dcm"))
    with DicomwebSource(url).open(key) as fh:
        got = pydicom.dcmread(fh)
    assert got.SOPInstanceUID == want.SOPInstanceUID and got.PixelData == want.PixelData

    # 2. a night without changes lists metadata and retrieves nothing
    http_log.clear()
    parts = len(list((tmp_path / "dw.zarr" / "catalog").iterdir()))
    again = ingest_archive(url, dw, secret=SECRET)
    assert again.unchanged == len(files) and again.new == again.changed == 0
    assert qido(http_log) and wado(http_log) == []
    assert len(list((tmp_path / "dw.zarr" / "catalog").iterdir())) == parts

    # 3. a new study arrives: only its series is retrieved
    http_log.clear()
    later = Path(get_testdata_file(LATER))
    upload(orthanc, [later])
    third = ingest_archive(url, dw, secret=SECRET)
    assert (third.new, third.unchanged, third.files_ingested) == (1, len(files), 1)
    assert len(wado(http_log)) == 1
    assert third.series_ingested == 1
    ingest_archive(str(folder_of([later], tmp_path / "folder2")), local, secret=SECRET)
    assert_same_series(dw, local)

    # a StudyDate window lists the recent studies only, and what it did not look at is not
    # missing: on 2004-08-27 with 3 days, CT_small (2004-01-19) is outside the window
    http_log.clear()
    window = DicomwebSource(f"{url}?window_days=3").list(today=date(2004, 8, 27))
    ct_study = pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID
    assert window and not any(f.path.startswith(ct_study) for f in window)
    assert any(p.startswith(ct_study) for p in catalog.current(dw)["path"])
    # instances are searched in the window's studies only (one query each, plus paging)
    searched = {p.split("/")[-2] for p in qido(http_log) if p.endswith("/instances")}
    assert searched == {f.path.split("/")[0] for f in window}
    delta = catalog.diff(window, catalog.current(dw))
    assert delta.missing == [] and delta.unchanged == len(window) and not delta.todo

    # no URL, host or staging folder reaches the store outside the catalog
    for f in (tmp_path / "dw.zarr").rglob("*"):
        if f.is_file() and "catalog" not in f.relative_to(tmp_path / "dw.zarr").parts:
            data = f.read_bytes()
            assert b"127.0.0.1" not in data and b"medpipe-stage-" not in data, f


def new_study(path: Path) -> Path:
    """CT_small as another patient's new study (new UIDs), written to ``path``."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = "NEWPAT01", "New^Patient"
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(path)
    return path


def test_a_pacs_that_stops_mid_run_fails_the_batch_and_the_next_run_finishes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with running_orthanc(tmp_path / "orthanc") as orthanc_args:
        stop_mid_run(rest_root(orthanc_args), orthanc_args, monkeypatch, tmp_path)


def stop_mid_run(
    orthanc: str, orthanc_args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ingest, upload a study, stop Orthanc after the listing; restart, ingest again."""
    upload(orthanc, [Path(get_testdata_file(n)) for n in FIRST])
    url = f"dicomweb+{orthanc}/dicom-web?retries=1&backoff_s=0.1"
    store = str(tmp_path / "s.zarr")
    ingest_archive(url, store, secret=SECRET)
    before, images = catalog.current(store), st.list_groups(store, "images")
    new = new_study(tmp_path / "new.dcm")
    upload(orthanc, [new])

    fetch = DicomwebSource.fetch

    def stop_then_fetch(self, paths, dest, **kw):  # noqa: ANN001, ANN003, ANN202
        make("orthanc-stop", orthanc_args)  # the PACS goes down after tonight's listing
        return fetch(self, paths, dest, **kw)

    monkeypatch.setattr(DicomwebSource, "fetch", stop_then_fetch)
    with pytest.raises(ArchiveError, match="1 archive entries could not be retrieved"):
        ingest_archive(url, store, secret=SECRET)
    # nothing half-done: no catalog row for the new instance, no new series
    assert catalog.current(store)["path"].tolist() == before["path"].tolist()
    assert st.list_groups(store, "images") == images

    monkeypatch.setattr(DicomwebSource, "fetch", fetch)
    make("orthanc", orthanc_args)  # back up, with its storage
    done = ingest_archive(url, store, secret=SECRET)
    assert (done.new, done.files_ingested, done.series_ingested) == (1, 1, 1)
    assert done.unchanged == len(before)


def test_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An Orthanc that requires basic auth: refused without it, ingested with it."""
    sent: list[str] = []
    send = requests.Session.send

    def recording(self: requests.Session, request: requests.PreparedRequest, **kw: object):
        sent.append(request.headers.get("Authorization", ""))
        return send(self, request, **kw)

    users = {"ORTHANC_USER": "medpipe", "ORTHANC_PASSWORD": "s3cret-pw"}
    with running_orthanc(tmp_path / "orthanc", users) as args:
        rest = rest_root(args)
        ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
        requests.post(f"{rest}/instances", data=ct, auth=("medpipe", "s3cret-pw"),
                      timeout=60).raise_for_status()
        url, store = f"dicomweb+{rest}/dicom-web", str(tmp_path / "s.zarr")
        monkeypatch.setattr(requests.Session, "send", recording)
        with pytest.raises(ArchiveError, match="HTTP 401.*MEDPIPE_DICOMWEB_USER"):
            ingest_archive(url, store, secret=SECRET)
        monkeypatch.setenv("MEDPIPE_DICOMWEB_TOKEN", "not-a-token-orthanc-knows")
        with pytest.raises(ArchiveError, match="HTTP 401"):
            ingest_archive(url, store, secret=SECRET)
        assert sent[-1] == "Bearer not-a-token-orthanc-knows"
        monkeypatch.delenv("MEDPIPE_DICOMWEB_TOKEN")
        monkeypatch.setenv("MEDPIPE_DICOMWEB_USER", "medpipe")
        monkeypatch.setenv("MEDPIPE_DICOMWEB_PASSWORD", "s3cret-pw")
        done = ingest_archive(url, store, secret=SECRET)
        assert (done.new, done.files_ingested) == (1, 1)
        assert sent[-1].startswith("Basic ")


def test_nightly_from_the_cli_on_a_dicomweb_archive(tmp_path: Path) -> None:
    """``medpipe nightly dicomweb+http://… STORE``: a CT series and its DICOM SEG, via PACS.

    The SEG object travels through Orthanc as any instance does and its segments become
    the series' labels, equal to the masks the SEG was written from.
    """
    from tests.io._seg import ct_series, two_masks, write_seg

    local = tmp_path / "local"
    sources, masks = ct_series(local / "ct"), two_masks()
    write_seg(local / "seg.dcm", sources, masks, ["GTV", "Node"])
    store = str(tmp_path / "store.zarr")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    env.pop("MEDPIPE_SECRET", None)
    with running_orthanc(tmp_path / "orthanc") as args:
        upload(rest_root(args), sorted(local.rglob("*.dcm")))
        url = f"dicomweb+{rest_root(args)}/dicom-web"
        cmd = [str(Path(sys.executable).parent / "medpipe"), "nightly", url, store,
               "--cluster", "local:1", "--demo-secret"]  # fmt: skip
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    cur = catalog.current(store)
    assert len(cur) == 4 and set(cur["status"]) == {"ingested"}, cur["reason"].tolist()
    (key,) = st.list_groups(store, "images")
    labels = st.open_labels(store, key)
    assert sorted(labels) == ["GTV", "Node"]
    for i, name in enumerate(["GTV", "Node"]):
        np.testing.assert_array_equal(labels[name].values > 0, masks[..., i])
