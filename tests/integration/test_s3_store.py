"""The store on S3 (moto's server, ``make s3``): the nightly flow, reruns, a crash mid-write.

Archive and store are both ``s3://`` URLs; fsspec/s3fs (in this process, the Dask
workers and the killed writer alike) find the server through ``AWS_ENDPOINT_URL``.  What
the server was asked is read from its own request log (every process's requests, the
workers' too).  A server that cannot start fails the test with the target's output.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3fs
from pydicom.data import get_testdata_file

from medpipe import catalog
from medpipe import store as st
from medpipe.errors import SeriesNotFoundError
from medpipe.features import FeatureConfig
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import pending_series, preprocessed_group
from tests.conftest import REPO
from tests.integration.conftest import moto_server
from tests.integration.test_orthanc import assert_same_series

BUCKET = "medpipe-s3-store"
FILES = ("CT_small.dcm", "MR_small.dcm")
SECRET = "s3-store-test-secret-0123456789abcdef"
FEATURES = FeatureConfig(families=("firstorder",))


class Moto:
    """The running server: its URL and request log."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def mark(self) -> int:
        """The log's current length (count requests after it with :meth:`gets`)."""
        return self.log.stat().st_size

    def gets(self, prefix: str, since: int) -> list[str]:
        """Object GETs (bodies, not listings) of keys under ``prefix`` after ``since``."""
        with self.log.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
        return re.findall(rf'"GET (/{re.escape(prefix)}/[^ ?]+) HTTP', text)

    def listings(self, bucket: str, prefix: str, since: int) -> int:
        """``ListObjectsV2`` requests under ``bucket/prefix`` after ``since``."""
        with self.log.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
        return len(re.findall(
            rf'"GET /{re.escape(bucket)}\?list-type=2&prefix={re.escape(prefix)}[/&]', text))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """``make s3`` on a free port, boto pointed at it; a Prefect test API; stopped after."""
    state = tmp_path_factory.mktemp("s3-store")
    extra = {"MEDPIPE_SECRET": SECRET, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with moto_server(state, **extra) as port:
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield Moto(f"http://127.0.0.1:{port}", state / "moto.log")


def _upload(folder: Path, prefix: str) -> str:
    fs = s3fs.S3FileSystem()
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(get_testdata_file(name), folder / name)
        fs.put_file(str(folder / name), f"{BUCKET}/{prefix}/{name}")
    return f"s3://{BUCKET}/{prefix}"


def _same_group(a: str, b: str, group: str) -> None:
    keys = st.list_groups(a, group)
    assert keys and keys == st.list_groups(b, group)
    for k in keys:
        x, y = st.open_image(a, k), st.open_image(b, k)
        assert x.dtype == y.dtype and np.array_equal(x.values, y.values), k


def _same_table(a: str, b: str, group: str) -> None:
    ta, tb = st.open_table(a, group).compute(), st.open_table(b, group).compute()
    assert ta.sizes == tb.sizes and ta.sizes["sample"] == len(FILES)
    assert list(ta["series"].values) == list(tb["series"].values)
    np.testing.assert_array_equal(ta["feature"].values, tb["feature"].values)
    np.testing.assert_allclose(ta["features"].values, tb["features"].values, equal_nan=True)


def test_nightly_on_s3_equals_local_and_reruns_read_no_archive_body(
    moto: Moto, tmp_path: Path
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.nightly import NightlyParams, nightly_flow

    folder = tmp_path / "archive"
    archive = _upload(folder, "nightly/archive")
    store, local = f"s3://{BUCKET}/nightly/store.zarr", str(tmp_path / "local.zarr")
    pcfg = PreprocessConfig.default()

    from distributed import LocalCluster

    # one real cluster for the three nights (each would otherwise start its own)
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                           dashboard_address=None)

    def night(a: str, s: str):  # noqa: ANN202
        return nightly_flow(
            NightlyParams(archive=a, store=s, cluster=cluster.scheduler_address,
                          features=FEATURES)
        )

    with cluster, prefect_test_harness(server_startup_timeout=120):
        since = moto.mark()
        first = night(archive, store)
        assert first.ingest.series_ingested == len(FILES)
        assert first.preprocess.done == len(FILES) and first.features.computed == len(FILES)
        assert sorted(moto.gets(f"{BUCKET}/nightly/archive", since)) == sorted(
            f"/{BUCKET}/nightly/archive/{n}" for n in FILES
        )
        # listed once, to plan; ingest works from that listing
        assert moto.listings(BUCKET, "nightly/archive", since) == 1
        ref = night(str(folder), local)

        # (b) a second night lists the bucket and reads no object body of the archive
        since = moto.mark()
        second = night(archive, store)
        assert second.ingest.unchanged == len(FILES) and second.ingest.series_ingested == 0
        assert second.report is None
        assert moto.gets(f"{BUCKET}/nightly/archive", since) == []

    # (a) the same store as the local run: series, preprocessed arrays, feature table
    assert_same_series(store, local, ignore={"ingest_run", "written_at"})
    _same_group(store, local, preprocessed_group(pcfg))
    assert first.features.group == ref.features.group
    _same_table(store, local, first.features.group)
    fs = s3fs.S3FileSystem()
    keys = fs.find(f"{BUCKET}/nightly/store.zarr")
    assert not [k for k in keys if "/.tmp-" in k]  # no temporaries left behind
    assert not fs.exists(f"{BUCKET}/nightly/store.zarr/locks/write.lock")  # released
    assert fs.exists(f"{BUCKET}/nightly/store.zarr/{first.report}")


#: The writer killed mid-write: it holds the store lock and ingests the archive, its
#: server-side copies slowed down so that the kill lands between two of them.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import s3fs
    from medpipe.ingest import ingest_archive
    from medpipe.store import WRITE_LOCK, store_lock

    copy = s3fs.S3FileSystem._cp_file

    async def slow_copy(self, *args, **kwargs):
        await asyncio.sleep(0.5)
        return await copy(self, *args, **kwargs)

    s3fs.S3FileSystem._cp_file = slow_copy
    archive, store, secret = sys.argv[1:4]
    with store_lock(store, WRITE_LOCK, owner="doomed-writer"):
        ingest_archive(archive, store, secret=secret.encode())
    """
)


def test_writer_killed_mid_write_leaves_no_series_that_reads_as_done(
    moto: Moto, tmp_path: Path
) -> None:
    archive = _upload(tmp_path / "archive", "crash/archive")
    store = f"s3://{BUCKET}/crash/store.zarr"
    images = f"{BUCKET}/crash/store.zarr/images"
    fs = s3fs.S3FileSystem(use_listings_cache=False)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "writer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), archive, store, SECRET],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out,
            stderr=subprocess.STDOUT,
        )

    def published() -> list[str]:
        # objects copied to a series' own prefix (not a temporary, not images/zarr.json)
        return [k for k in fs.find(images) if "/.tmp-" not in k and k.count("/") > 4]

    try:
        deadline = time.monotonic() + 120
        while not published() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the writer ended first:\n{log.read_text()[-3000:]}"
        assert published(), "the writer never started copying a series into place"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    half = sorted({k.split("/")[4] for k in published()})
    assert half, "nothing half written"
    for key in half:
        path = f"images/{key}"
        assert not st.exists(store, path)
        with pytest.raises(SeriesNotFoundError):
            st.open_image(store, path)
    assert st.list_groups(store, "images") == []
    assert pending_series(store, config=PreprocessConfig.default()) == []
    assert catalog.current(store).empty or len(catalog.current(store)) < len(FILES)
    # the killed writer's lock is still there; its holder is gone (same host, dead pid)
    assert fs.exists(f"{BUCKET}/crash/store.zarr/locks/write.lock")

    # the next run takes the lock over, cleans up and finishes the job
    from medpipe.ingest import ingest_archive

    with st.store_lock(store, st.WRITE_LOCK, owner="next-run"):
        st.clean_temporaries(store, "images")
        again = ingest_archive(archive, store, secret=SECRET.encode())
    assert again.files_ingested >= 1
    done = st.list_groups(store, "images")
    assert len(done) == len(FILES) and set(half) <= {p.split("/")[-1] for p in done}
    local = str(tmp_path / "local.zarr")
    ingest_archive(str(tmp_path / "archive"), local, secret=SECRET.encode())
    assert_same_series(store, local, ignore={"ingest_run", "written_at"})
    assert not [k for k in fs.find(images) if "/.tmp-" in k]
    assert pending_series(store, config=PreprocessConfig.default()) == [
        p.split("/")[-1] for p in done
    ]


def test_lock_on_s3_is_a_lease_by_conditional_writes(
    moto: Moto, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import threading

    from medpipe.errors import StoreLockedError
    from medpipe.store import conditional

    store = f"s3://{BUCKET}/lock/store.zarr"
    path = f"{BUCKET}/lock/store.zarr/locks/write.lock"
    fs = s3fs.S3FileSystem(use_listings_cache=False)

    # the primitives: exclusive create, compare-and-swap by ETag
    tag = conditional.create(fs, f"{BUCKET}/lock/probe", b"1")
    with pytest.raises(FileExistsError):
        conditional.create(fs, f"{BUCKET}/lock/probe", b"2")
    new = conditional.swap(fs, f"{BUCKET}/lock/probe", b"3", tag)
    with pytest.raises(conditional.ConditionFailed):
        conditional.swap(fs, f"{BUCKET}/lock/probe", b"4", tag)  # stale ETag
    assert not conditional.delete(fs, f"{BUCKET}/lock/probe", tag)
    assert conditional.delete(fs, f"{BUCKET}/lock/probe", new)

    # a live holder on another host keeps everyone out
    with st.store_lock(store, st.WRITE_LOCK, owner="a", host="host-a"):
        with pytest.raises(StoreLockedError, match="locked by run a"):
            with st.store_lock(store, st.WRITE_LOCK, owner="b", host="host-b"):
                pass
    assert not fs.exists(path)

    # an expired lease: of two takers at once exactly one wins
    stale = {"owner": "dead", "host": "host-x", "pid": 1, "token": "t-dead", "ttl_s": 1,
             "heartbeat": time.time() - 100}
    fs.pipe_file(path, json.dumps(stale).encode())
    time.sleep(1.5)  # the object's LastModified counts as a heartbeat too
    won, lost = [], []
    release = threading.Event()
    start = threading.Barrier(2)

    def take(name: str) -> None:
        start.wait()
        try:
            with st.store_lock(store, st.WRITE_LOCK, owner=name, host=name):
                won.append(name)
                release.wait(30)
        except StoreLockedError:
            lost.append(name)

    threads = [threading.Thread(target=take, args=(n,)) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not (won and lost) and len(won) + len(lost) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    held = json.loads(fs.cat_file(path))
    release.set()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == 1, (won, lost)
    assert held["owner"] == won[0]

    # a holder whose lease was taken notices at its next heartbeat and, at the end,
    # does not delete the new holder's lock
    with caplog.at_level("ERROR", logger="medpipe.store.lock"):
        with st.store_lock(store, st.WRITE_LOCK, owner="slow", host="host-s", ttl_s=1.2,
                           heartbeat_s=0.2):
            other = {"owner": "taker", "host": "host-t", "token": "t-new", "ttl_s": 60,
                     "heartbeat": time.time()}
            fs.pipe_file(path, json.dumps(other).encode())
            time.sleep(0.8)
    assert "was taken over" in caplog.text
    assert json.loads(fs.cat_file(path))["owner"] == "taker"
    fs.rm(path)
