"""The store's write lock ``locks/<name>.lock``: exclusive, re-entrant, taken over after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from medpipe.errors import StoreLockedError
from medpipe.store import layout
from medpipe.store.fs import is_local, join, store_root

__all__ = ["WRITE_LOCK", "store_lock"]

#: The lock every stage writer holds (ingest, preprocess, features, nightly, report,
#: predict): one writer of a store's images and tables at a time.
WRITE_LOCK = "write"


def _lock_holder_alive(info: Mapping[str, Any]) -> bool:
    """False only when the holder is known dead (same host, no such process)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def store_lock(store: str, name: str, *, owner: str) -> Iterator[dict[str, Any]]:
    """Hold the store's ``name`` write lock for the duration of the block.

    Two runs that both write the store (two nightly runs, say) must never overlap.
    The lock is a file ``locks/<name>.lock`` created exclusively; it records the owner,
    host and pid.  A lock whose holder died on this host (a crash, SIGKILL) is taken
    over, so a rerun after a crash is never blocked.  The lock is re-entrant within one
    process (a flow holding it may call subflows that take it too).

    Parameters
    ----------
    store
        Store URL or path.
    name
        Lock name (e.g. ``"nightly"``).
    owner
        Who takes it (a run id), recorded for the error message of the next taker.

    Yields
    ------
    dict
        The lock record.

    Raises
    ------
    StoreLockedError
        Another live run holds the lock.

    Notes
    -----
    On object stores, exclusive creation is not atomic; run one scheduler per store
    there, or use a Prefect concurrency limit (see ``deploy/README.md``).
    """
    fs, root = store_root(store)
    path = join(root, layout.lock(name))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    info = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    payload = json.dumps(info).encode()
    for _ in range(2):
        try:
            if is_local(fs):
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
            else:
                if fs.exists(path):
                    raise FileExistsError(path)
                fs.pipe_file(path, payload)
            break
        except FileExistsError:
            try:
                held = json.loads(fs.cat_file(path))
            except (FileNotFoundError, ValueError):
                held = {}
            if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
                # re-entered by the same process (a flow and its subflows): already ours
                yield held
                return
            if held and _lock_holder_alive(held):
                raise StoreLockedError(
                    f"store {store!r} is locked by run {held.get('owner')} (pid "
                    f"{held.get('pid')} on {held.get('host')}, since {held.get('since')}); "
                    "wait for it to finish"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)  # the holder is gone: take the lock over
    else:  # pragma: no cover - lost a race twice
        raise StoreLockedError(f"store {store!r}: could not take the {name} lock")
    try:
        yield info
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)
