"""Ingest from an S3 bucket served by a real S3 API (moto's server, ``make s3``).

The server is started by the Makefile target on a free localhost port and stopped at
the end of the module by its PID file; a server that cannot start fails the test with
the target's output.  fsspec/s3fs find it through the usual boto configuration
(``AWS_ENDPOINT_URL`` and the access keys in the environment), as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs
from pydicom.data import get_testdata_file

from medpipe import catalog
from medpipe.ingest import ingest_archive
from tests.integration.conftest import moto_server
from tests.integration.test_orthanc import assert_same_series, folder_of

SECRET = b"s3-test-secret"
FILES = ("CT_small.dcm", "MR_small.dcm")
BUCKET = "hospital-archive"
PREFIX = f"{BUCKET}/site-a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3fs.S3FileSystem]:
    """``make s3`` on a free port, the environment pointing boto at it; stopped after."""
    with moto_server(tmp_path_factory.mktemp("s3")):
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        yield fs


@pytest.fixture
def body_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every object body s3fs downloads (``get_file``) or opens for reading."""
    seen: list[str] = []
    get_file, open_ = s3fs.S3FileSystem._get_file, s3fs.S3FileSystem._open

    async def counting_get(self, rpath, lpath, **kw):  # noqa: ANN001, ANN202
        seen.append(rpath)
        return await get_file(self, rpath, lpath, **kw)

    def counting_open(self, path, mode="rb", **kw):  # noqa: ANN001, ANN202
        if "r" in mode:
            seen.append(path)
        return open_(self, path, mode, **kw)

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", counting_get)
    monkeypatch.setattr(s3fs.S3FileSystem, "_open", counting_open)
    # instances bind their sync methods when created: new ones see the counters
    s3fs.S3FileSystem.clear_instance_cache()
    yield seen
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_archive_equals_folder_and_reruns_read_no_body(
    s3: s3fs.S3FileSystem, body_reads: list[str], tmp_path: Path
) -> None:
    files = [Path(get_testdata_file(n)) for n in FILES]
    folder = folder_of(files, tmp_path / "folder")
    for f in sorted(folder.iterdir()):
        s3.put_file(str(f), f"{PREFIX}/{f.name}")
    s3.pipe_file(f"{PREFIX}/.hidden", b"not part of the archive")
    url = f"s3://{PREFIX}"
    remote, local = str(tmp_path / "s3.zarr"), str(tmp_path / "local.zarr")

    first = ingest_archive(url, remote, secret=SECRET)
    assert (first.scanned, first.new, first.files_ingested) == (2, 2, 2)
    assert len(body_reads) == 2
    ingest_archive(str(folder), local, secret=SECRET)
    # the same bytes: everything equal, the source files' hashes too
    assert_same_series(remote, local, ignore={"ingest_run", "written_at"})
    cat = catalog.current(remote)
    assert sorted(cat["path"]) == sorted(p.name for p in folder.iterdir())
    assert cat["meta"].notna().all()  # the objects' ETags

    # a second run lists the bucket and reads no object body
    body_reads.clear()
    parts = sorted((tmp_path / "s3.zarr" / "catalog").iterdir())
    again = ingest_archive(url, remote, secret=SECRET)
    assert (again.unchanged, again.new, again.changed) == (2, 0, 0)
    assert body_reads == []
    assert sorted((tmp_path / "s3.zarr" / "catalog").iterdir()) == parts

    # the same bytes uploaded again (a new LastModified, the same ETag): still unchanged;
    # a new object: only it is read
    name = sorted(folder.iterdir())[0].name
    s3.pipe_file(f"{PREFIX}/{name}", (folder / name).read_bytes())
    later = Path(get_testdata_file("JPEG2000.dcm"))
    s3.put_file(str(later), f"{PREFIX}/later/{later.name}")
    third = ingest_archive(url, remote, secret=SECRET)
    assert (third.unchanged, third.new, third.changed, third.files_ingested) == (2, 1, 0, 1)
    assert [p.rsplit("/", 1)[-1] for p in body_reads] == [later.name]
