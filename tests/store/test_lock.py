"""The store write lock across processes: exclusive, re-entrant, taken over after a crash."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medpipe.errors import StoreError, StoreLockedError
from medpipe.store import store_lock

HOLD = """
import sys, time
from medpipe.store import store_lock
with store_lock(sys.argv[1], "write", owner="other-run"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(store: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    proc = _holder(store)
    try:
        with (
            pytest.raises(StoreLockedError, match="other-run") as info,
            store_lock(str(store), "write", owner="me"),
        ):
            pass
        assert isinstance(info.value, StoreError)
        proc.send_signal(signal.SIGKILL)  # a crashed run must not block the next one
        proc.wait(timeout=10)
        with store_lock(str(store), "write", owner="me") as held:
            assert held["owner"] == "me"
    finally:
        proc.kill()
    assert not (store / "locks" / "write.lock").exists()


def test_reentrant_in_one_process(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    with store_lock(store, "write", owner="flow"), store_lock(store, "write", owner="subflow"):
        assert (tmp_path / "s.zarr" / "locks" / "write.lock").exists()
    assert not (tmp_path / "s.zarr" / "locks" / "write.lock").exists()


def test_lock_released_on_error(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    with pytest.raises(RuntimeError), store_lock(store, "write", owner="a"):
        raise RuntimeError("boom")
    start = time.monotonic()
    with store_lock(store, "write", owner="b"):
        assert time.monotonic() - start < 1
