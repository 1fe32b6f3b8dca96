"""Archive sources: the registry by URL scheme, metadata-hash diffs, staged ingest.

fsspec archives are tested on real filesystems (``memory://``, ``file://``) against the
ingest of the same files from a local folder; DICOMweb against a real server is in
``tests/integration/test_orthanc.py``, S3 in ``tests/integration/test_s3.py``.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from datetime import date
from pathlib import Path

import fsspec
import numpy as np
import pytest
import requests
from nibabel.testing import data_path as nibabel_data
from pydicom.data import get_testdata_file

from medpipe import catalog, sources
from medpipe import store as st
from medpipe.catalog import FileStat
from medpipe.config import dicomweb_auth
from medpipe.errors import ArchiveError, ConfigError
from medpipe.ingest import ingest_archive
from medpipe.sources.dicomweb import (
    DicomwebSource,
    instance_entry,
    listing_since,
    metadata_hash,
    with_retries,
)
from medpipe.sources.fsspec_source import FsspecSource, entry_stat
from medpipe.sources.local import LocalSource

SECRET = b"sources-test-secret"


def archive_files() -> dict[str, Path]:
    """A small archive: two DICOM series and a NIfTI volume (bundled test files)."""
    return {
        "ct/CT_small.dcm": Path(get_testdata_file("CT_small.dcm")),
        "mr/MR_small.dcm": Path(get_testdata_file("MR_small.dcm")),
        "nifti/anatomical.nii": Path(nibabel_data) / "anatomical.nii",
    }


def as_folder(root: Path) -> Path:
    for rel, src in archive_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


def as_memory(prefix: str) -> str:
    fs = fsspec.filesystem("memory")
    for rel, src in archive_files().items():
        fs.pipe_file(f"/{prefix}/{rel}", src.read_bytes())
    fs.pipe_file(f"/{prefix}/.hidden/x.dcm", b"not listed")
    return f"memory://{prefix}"


def same_store(a: str, b: str) -> None:
    keys = st.list_groups(a, "images")
    assert keys and keys == st.list_groups(b, "images")
    for k in keys:
        assert np.array_equal(st.open_image(a, k).values, st.open_image(b, k).values)
        ma, mb = st.read_attrs(a, k), st.read_attrs(b, k)
        ma, mb = ma.get("medpipe", ma), mb.get("medpipe", mb)
        skip = {"ingest_run", "written_at"}
        assert {n: v for n, v in ma.items() if n not in skip} == {
            n: v for n, v in mb.items() if n not in skip
        }


# --------------------------------------------------------------------------- registry


def test_sources_are_chosen_by_url_scheme(tmp_path: Path) -> None:
    assert isinstance(sources.open_source(str(tmp_path)), LocalSource)
    assert isinstance(sources.open_source(f"file://{tmp_path}"), FsspecSource)
    assert isinstance(sources.open_source("memory://x"), FsspecSource)
    dw = sources.open_source("dicomweb+https://pacs.example/dicom-web/?window_days=3")
    assert isinstance(dw, DicomwebSource)
    assert dw.base_url == "https://pacs.example/dicom-web" and dw.window_days == 3
    assert not sources.is_url(str(tmp_path)) and not sources.is_url(r"C:\archive")
    assert sources.scheme_of("S3://b/p") == "s3"
    with pytest.raises(ConfigError, match="no source for URL scheme 'nosuch'"):
        sources.open_source("nosuch://x")
    with pytest.raises(ConfigError, match="unknown DICOMweb option.*colour"):
        sources.open_source("dicomweb+http://h/dicom-web?colour=red")
    with pytest.raises(ConfigError, match="concurrency"):
        sources.open_source("memory://x", concurrency=0)
    with pytest.raises(ConfigError, match="credentials in the URL") as err:
        sources.open_source("dicomweb+https://user:hunter2@pacs/dicom-web")
    assert "hunter2" not in str(err.value)


def test_a_local_url_path_that_is_no_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        catalog.scan(tmp_path / "nothing-here")
    with pytest.raises(ConfigError, match="does not exist"):
        catalog.scan("memory://no-such-archive-prefix")


# --------------------------------------------------------------------------- decisions


def test_listing_window_and_full_reconciliation() -> None:
    sunday, monday = date(2026, 11, 29), date(2026, 11, 30)
    assert listing_since(monday, window_days=None, full_weekday=None) is None
    assert listing_since(monday, window_days=3, full_weekday=None) == date(2026, 11, 27)
    assert listing_since(monday, window_days=3, full_weekday=6) == date(2026, 11, 27)
    assert listing_since(sunday, window_days=3, full_weekday=6) is None


def test_instance_entries_key_on_the_sop_uid_and_hash_their_metadata() -> None:
    rec = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]},
        "00200013": {"vr": "IS", "Value": [7]},
    }
    entry = instance_entry(rec)
    assert entry is not None and entry.path == "1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    assert entry.meta == metadata_hash(rec) and len(entry.meta) == 64
    moved = {**rec, "00081190": {"vr": "UR", "Value": ["http://other-host/dicom-web/..."]}}
    assert metadata_hash(moved) == metadata_hash(rec)  # the server's URL is not the instance
    edited = {**rec, "00200013": {"vr": "IS", "Value": [8]}}
    assert metadata_hash(edited) != metadata_hash(rec)
    no_study = {k: v for k, v in rec.items() if k != "0020000D"}
    assert instance_entry(no_study) is None
    assert instance_entry(no_study, study="9.9").path.startswith("9.9/")


def test_object_versions_are_the_change_signal() -> None:
    info = {"size": 10, "ETag": '"abc"', "LastModified": "2026-12-01T10:00:00+00:00"}
    f = entry_stat("a/b.dcm", info)
    assert (f.path, f.size, f.meta) == ("a/b.dcm", 10, "abc") and f.mtime_ns > 0
    assert entry_stat("x", {"size": 3, "mtime": 1.5}) == FileStat("x", 3, 1_500_000_000)


def test_diff_compares_metadata_hashes_and_partial_listings(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    old = [FileStat("s1/a.dcm", 0, 0, "h1"), FileStat("s1/b.dcm", 0, 0, "h2"),
           FileStat("s2/c.dcm", 0, 0, "h3"), FileStat("plain.nii", 5, 6)]
    catalog.append(store, [{**vars(f), "status": "ingested"} for f in old], run_id="r1")
    known = catalog.current(store)
    # size and mtime do not matter where a hash is given; the hash does
    now = sources.Listing([FileStat("s1/a.dcm", 99, 99, "h1"), FileStat("s1/b.dcm", 0, 0, "h2x"),
                           FileStat("plain.nii", 5, 7)])
    d = catalog.diff(now, known)
    assert sorted(f.path for f in d.changed) == ["plain.nii", "s1/b.dcm"]
    assert d.unchanged == 1 and d.missing == ["s2/c.dcm"]
    # a StudyDate window covers study s1 only: s2 was not looked at, so it is not missing
    now.covers = lambda p: p.startswith("s1/")
    assert catalog.diff(now, known).missing == []
    # a catalog written before the ``meta`` column existed still diffs
    legacy = known.drop(columns=["meta"])
    assert {f.path for f in catalog.diff(now, legacy).changed} == {"s1/a.dcm", "s1/b.dcm",
                                                                  "plain.nii"}


def test_dicomweb_credentials_come_from_the_environment() -> None:
    assert dicomweb_auth({}).token is None
    bearer = dicomweb_auth({"MEDPIPE_DICOMWEB_TOKEN": "t0k", "MEDPIPE_DICOMWEB_USER": "u"})
    assert (bearer.token, bearer.user) == ("t0k", None)
    basic = dicomweb_auth({"MEDPIPE_DICOMWEB_USER": "u", "MEDPIPE_DICOMWEB_PASSWORD": "pw"})
    assert (basic.user, basic.password) == ("u", "pw")
    assert "pw" not in repr(basic) and "t0k" not in repr(bearer)
    with pytest.raises(ConfigError, match="MEDPIPE_DICOMWEB_PASSWORD"):
        dicomweb_auth({"MEDPIPE_DICOMWEB_USER": "u"})


def _http_error(status: int) -> requests.HTTPError:
    resp = requests.Response()
    resp.status_code = status
    return requests.HTTPError(f"{status}", response=resp)


def test_retries_back_off_on_network_and_server_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("medpipe.sources.dicomweb.time.sleep", waits.append)
    outcomes = [requests.ConnectionError("down"), _http_error(503), "ok"]

    def call() -> str:
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    assert with_retries(call, retries=3, backoff_s=0.5, what="x") == "ok"
    assert waits == [0.5, 1.0]
    calls = []

    def not_found() -> None:
        calls.append(1)
        raise _http_error(404)

    with pytest.raises(requests.HTTPError):
        with_retries(not_found, retries=3, backoff_s=0.5, what="x")
    assert len(calls) == 1  # a client error is not retried
    with pytest.raises(requests.ConnectionError):
        with_retries(lambda: (_ for _ in ()).throw(requests.ConnectionError()), retries=2,
                     backoff_s=0.1, what="x")
    assert waits[-2:] == [0.1, 0.2]


# --------------------------------------------------------------------------- ingest


def test_fsspec_archive_ingests_like_the_folder_and_reruns_are_noops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = as_folder(tmp_path / "folder")
    ref = ingest_archive(str(folder), str(tmp_path / "ref.zarr"), secret=SECRET)
    assert ref.files_ingested == 3 and ref.quarantined == 0
    for url, name in ((as_memory("archive-a"), "mem.zarr"), (f"file://{folder}", "file.zarr")):
        out = str(tmp_path / name)
        capsys.readouterr()
        first = ingest_archive(url, out, secret=SECRET)
        assert (first.scanned, first.new, first.files_ingested) == (3, 3, 3)
        assert "retrieve: 3/3 (100%)" in capsys.readouterr().err  # progress, piped
        same_store(out, str(tmp_path / "ref.zarr"))  # the source files' hashes too
        again = ingest_archive(url, out, secret=SECRET)
        assert (again.unchanged, again.new, again.changed, again.files_ingested) == (3, 0, 0, 0)
        assert "retrieve" not in capsys.readouterr().err
    # no staging folder is left behind, and none is named in the store
    assert not list(Path(tempfile.gettempdir()).glob("medpipe-stage-*/ct"))


class FlakySource(FsspecSource):
    """A memory archive whose retrieval of chosen entries fails (a server down)."""

    broken: set[str] = set()

    def fetch(self, paths, dest, **kw):  # noqa: ANN001, ANN003, ANN201
        ok = [p for p in paths if p not in self.broken]
        return super().fetch(ok, dest, **kw) | (set(paths) - set(ok))


def test_an_entry_that_cannot_be_retrieved_is_left_for_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = as_memory("archive-flaky")
    monkeypatch.setitem(sources.base._SOURCES, "flaky", lambda u, **kw: FlakySource(
        u.replace("flaky://", "memory://"), **kw))
    flaky, store = url.replace("memory://", "flaky://"), str(tmp_path / "s.zarr")
    FlakySource.broken = {"mr/MR_small.dcm"}
    with pytest.raises(ArchiveError, match="1 archive entries could not be retrieved"):
        ingest_archive(flaky, store, secret=SECRET)
    cat = catalog.current(store)
    assert sorted(cat["path"]) == ["ct/CT_small.dcm", "nifti/anatomical.nii"]
    assert (cat["status"] == "ingested").all()
    FlakySource.broken = set()
    again = ingest_archive(flaky, store, secret=SECRET)
    assert (again.new, again.unchanged, again.files_ingested) == (1, 2, 1)
    assert len(st.list_groups(store, "images")) == 3


def test_the_phi_audit_of_a_url_archive_says_why_without_the_url(tmp_path: Path) -> None:
    from medpipe.report import phi_audit_record

    url = "dicomweb+https://pacs.example.org/dicom-web"
    line = phi_audit_record(str(tmp_path / "s.zarr"), url)["line"]
    assert line.startswith("PHI audit: not completed") and "local copy" in line
    assert "pacs.example.org" not in line


def two_slice_series() -> dict[str, bytes]:
    """CT_small and a second slice of the same series (new SOP UID, next position)."""
    import pydicom

    first = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    second = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = (
        pydicom.uid.generate_uid()
    )
    second.InstanceNumber = int(first.InstanceNumber) + 1
    pos = [float(v) for v in first.ImagePositionPatient]
    second.ImagePositionPatient = [pos[0], pos[1], pos[2] + float(first.SliceThickness or 1)]
    out = {}
    for name, ds in (("s/1.dcm", first), ("s/2.dcm", second)):
        buf = io.BytesIO()
        ds.save_as(buf)
        out[name] = buf.getvalue()
    return out


def test_a_series_whose_unchanged_slice_cannot_be_fetched_waits_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed slice's series is read whole; if a sibling fails, none of it is read."""
    fs = fsspec.filesystem("memory")
    slices = two_slice_series()
    for name, data in slices.items():
        fs.pipe_file(f"/archive-siblings/{name}", data)
    monkeypatch.setitem(sources.base._SOURCES, "flaky", lambda u, **kw: FlakySource(
        u.replace("flaky://", "memory://"), **kw))
    url, store = "flaky://archive-siblings", str(tmp_path / "s.zarr")
    FlakySource.broken = set()
    first = ingest_archive(url, store, secret=SECRET)
    assert (first.files_ingested, first.series_ingested) == (2, 1)
    (key,) = st.list_groups(store, "images")
    old = st.open_image(store, key).values
    assert old.shape[0] == 2 and np.unique(old[0]).size > 1
    rows = len(catalog.read_catalog(store))

    # slice 1 changes (other bytes); slice 2 is unchanged but cannot be fetched tonight
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = bytes(len(ds.PixelData))
    buf = io.BytesIO()
    ds.save_as(buf)
    fs.pipe_file("/archive-siblings/s/1.dcm", buf.getvalue() + b"\0\0")
    FlakySource.broken = {"s/2.dcm"}
    with pytest.raises(ArchiveError, match="1 archive entries"):
        ingest_archive(url, store, secret=SECRET)
    assert len(catalog.read_catalog(store)) == rows  # nothing written for the series
    assert np.array_equal(st.open_image(store, key).values, old)  # kept as it was

    FlakySource.broken = set()
    again = ingest_archive(url, store, secret=SECRET)
    assert (again.changed, again.files_ingested, again.series_ingested) == (1, 2, 1)
    new = st.open_image(store, key).values
    assert np.unique(new[0]).size == 1 and np.array_equal(new[1], old[1])  # slice 1 zeroed
