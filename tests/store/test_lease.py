"""The store lock as a lease across hosts: heartbeat, TTL, atomic takeover.

Each holder is a real process; the host name a process presents is ``store_lock``'s
``host`` parameter, so two processes on this machine act as two hosts sharing a store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medpipe.errors import StoreLockedError
from medpipe.store import store_lock
from medpipe.store.lock import lease_expired

TTL = 2.0

HOLD = """
import sys, time
from medpipe.store import store_lock
store, host, ttl = sys.argv[1], sys.argv[2] or None, float(sys.argv[3])
with store_lock(store, "write", owner="run-a", host=host, ttl_s=ttl, heartbeat_s=0.25):
    print("held", flush=True)
    time.sleep(120)
"""

CONTEND = """
import os, sys, time
from medpipe.store import store_lock
store, host, log = sys.argv[1], sys.argv[2], sys.argv[3]
with store_lock(store, "write", owner=host, host=host, ttl_s=2, heartbeat_s=0.25, wait_s=60):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{host} in {time.time()!r}\\n".encode())
    time.sleep(0.4)
    os.write(fd, f"{host} out {time.time()!r}\\n".encode())
    os.close(fd)
"""


def _holder(store: Path, *, host: str = "", ttl: float = TTL) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store), host, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_other_host_waits_while_the_holder_heartbeats_and_takes_over_after_the_ttl(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s.zarr"
    lock = store / "locks" / "write.lock"
    proc = _holder(store, host="node-a")
    try:
        first = json.loads(lock.read_text())
        assert (first["host"], first["owner"], first["ttl_s"]) == ("node-a", "run-a", TTL)
        start = time.time()
        # waits well past the TTL: the heartbeat keeps the live holder's lease fresh
        with (
            pytest.raises(StoreLockedError, match=r"run-a .*on node-a") as info,
            store_lock(str(store), "write", owner="run-b", host="node-b", wait_s=2 * TTL),
        ):
            pass
        assert time.time() - start >= 2 * TTL
        assert "heartbeat" in str(info.value)
        assert time.time() - lock.stat().st_mtime < TTL  # renewed while we waited
        _kill(proc)
        last_beat = lock.stat().st_mtime
        # another host cannot see the pid: it must wait for the lease to run out
        with (
            pytest.raises(StoreLockedError, match="run-a"),
            store_lock(str(store), "write", owner="run-b", host="node-b"),
        ):
            pass
        with store_lock(
            str(store), "write", owner="run-b", host="node-b", wait_s=4 * TTL
        ) as held:
            assert time.time() - last_beat > TTL  # taken only once the lease expired
            now = json.loads(lock.read_text())
            assert (now["owner"], now["host"], now["token"]) == ("run-b", "node-b", held["token"])
            assert now["token"] != first["token"]
    finally:
        proc.kill()
    assert not lock.exists()
    assert not list(lock.parent.glob("write.lock.*"))  # no claim or temporary left


def test_a_dead_holder_on_the_same_host_is_replaced_at_once(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    proc = _holder(store, ttl=600.0)  # a long lease: only the pid check can free it
    try:
        with (
            pytest.raises(StoreLockedError, match="run-a"),
            store_lock(str(store), "write", owner="me"),
        ):
            pass
        _kill(proc)
        with store_lock(str(store), "write", owner="me") as held:
            assert held["owner"] == "me"
    finally:
        proc.kill()


def test_contending_hosts_take_an_expired_lease_one_at_a_time(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    lock = store / "locks" / "write.lock"
    lock.parent.mkdir(parents=True)
    old = time.time() - 600
    lock.write_text(json.dumps({"owner": "crashed", "host": "node-x", "pid": 1,
                                "token": "t-crashed", "ttl_s": 5, "heartbeat": old}))
    os.utime(lock, (old, old))
    log = tmp_path / "log.txt"
    procs = [
        subprocess.Popen([sys.executable, "-c", CONTEND, str(store), f"node-{i}", str(log)])
        for i in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    events = [line.split() for line in log.read_text().splitlines()]
    assert sorted(h for h, kind, _ in events if kind == "in") == ["node-0", "node-1", "node-2"]
    times = sorted((float(t), kind) for _, kind, t in events)
    assert [kind for _, kind in times] == ["in", "out"] * 3  # never two holders at once
    assert not lock.exists()
    assert not list(lock.parent.glob("write.lock.*"))


def test_an_older_lock_file_expires_by_its_modification_time(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    lock = store / "locks" / "write.lock"
    lock.parent.mkdir(parents=True)
    # the record of an earlier medpipe: no token, TTL or heartbeat
    lock.write_text(json.dumps({"owner": "old-run", "host": "node-x", "pid": 1,
                                "since": "2026-01-01T00:00:00Z"}))
    with (
        pytest.raises(StoreLockedError, match="old-run"),
        store_lock(str(store), "write", owner="me"),
    ):
        pass
    old = time.time() - 120
    os.utime(lock, (old, old))
    with store_lock(str(store), "write", owner="me", ttl_s=60) as held:
        assert json.loads(lock.read_text())["token"] == held["token"]


def test_lease_expiry_rule() -> None:
    now = 1_000_000.0
    rec = {"host": "node-a", "pid": os.getpid(), "ttl_s": 10.0, "heartbeat": now - 5}
    assert not lease_expired(rec, host="node-b", now=now)
    assert lease_expired(rec, host="node-b", now=now + 6)
    assert not lease_expired(rec, host="node-a", now=now)  # our own pid is alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert lease_expired({**rec, "pid": dead.pid}, host="node-a", now=now)
    assert not lease_expired({**rec, "pid": dead.pid}, host="node-b", now=now)
    assert lease_expired({"heartbeat": now - 61}, host="node-a", now=now, ttl_s=60)


def test_bad_lease_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heartbeat_s"), store_lock(
        str(tmp_path / "s.zarr"), "write", owner="me", ttl_s=1, heartbeat_s=2
    ):
        pass


def test_an_object_store_lease_heartbeats_by_rewriting_its_record() -> None:
    """fsspec stores without file times the holder can touch (here ``memory://``)."""
    import uuid

    import fsspec

    store = f"memory://lease-{uuid.uuid4().hex}.zarr"
    fs, path = fsspec.filesystem("memory"), f"/{store.removeprefix('memory://')}/locks/write.lock"
    with store_lock(store, "write", owner="run-a", host="node-a", ttl_s=0.5, heartbeat_s=0.1):
        time.sleep(1.2)  # over twice the TTL: only the heartbeat keeps the lease
        assert time.time() - json.loads(fs.cat_file(path))["heartbeat"] < 0.5
        with (
            pytest.raises(StoreLockedError, match="run-a"),
            store_lock(store, "write", owner="run-b", host="node-b"),
        ):
            pass
    assert not fs.exists(path)
    # a holder gone without releasing: its record stays until the lease runs out
    fs.pipe_file(path, json.dumps({"owner": "gone", "host": "node-a", "pid": 1, "token": "t",
                                   "ttl_s": 0.5, "heartbeat": time.time()}).encode())
    with (
        pytest.raises(StoreLockedError, match="gone"),
        store_lock(store, "write", owner="run-b", host="node-b"),
    ):
        pass
    with store_lock(store, "write", owner="run-b", host="node-b", wait_s=10) as held:
        assert json.loads(fs.cat_file(path))["token"] == held["token"]
    assert not fs.exists(path)
