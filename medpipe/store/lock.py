"""The store's write lock ``locks/<name>.lock``: an exclusive, re-entrant lease.

The lock file records its holder (owner, host, pid and a fresh token), the lease's
time to live and the holder's last heartbeat.  While a process holds the lock a daemon
thread renews the lease every ``heartbeat_s`` (on a local or network file system by
touching the file, elsewhere by rewriting its record), so the lease of a live holder
never expires.  Another process may take the lock over when

* the holder ran on the same host and its process is gone (found at once, by pid), or
* the lease expired: no heartbeat for ``ttl_s`` seconds, whichever host held it (a
  crashed node, a killed job), measured on the taker's clock against the file's
  modification time (hosts that share a store are expected to keep their clocks in
  step, as NTP does, to well within the TTL).

A takeover is atomic: the taker first creates ``<name>.lock.claim-<token>`` exclusively
for the stale holder's token (only one taker can), checks that the lock still names
that holder, and then replaces the lock file with its own record in one ``os.replace``.

On S3 (:mod:`medpipe.store.conditional`) the lease uses conditional writes instead: the
lock is created with ``If-None-Match: *`` (one creator wins), a takeover and every
heartbeat rewrite it with ``If-Match: <the ETag last read or written>`` (one taker wins;
a holder whose lease was taken learns it at its next heartbeat, logs it and stops
renewing), and the release deletes it with ``If-Match`` (never another holder's lock).
On other object stores (no conditional writes) creation is check-then-write: two
schedulers starting within one request's latency could both believe they hold the lock;
run one scheduler per store there, or a Prefect concurrency limit.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec

from medpipe.errors import StoreLockedError
from medpipe.store import conditional, layout
from medpipe.store.fs import is_local, join, store_root

__all__ = ["WRITE_LOCK", "DEFAULT_TTL_S", "lease_expired", "read_lease", "store_lock"]

log = logging.getLogger(__name__)

#: The lock every stage writer holds (ingest, preprocess, features, nightly, report,
#: predict): one writer of a store's images and tables at a time.
WRITE_LOCK = "write"

#: Seconds without a heartbeat after which another host may take a lease over.
DEFAULT_TTL_S = 60.0

_CLAIM = ".claim-"


@dataclass
class _Lease:
    """A lock this process holds (shared by its re-entrant uses)."""

    fs: fsspec.AbstractFileSystem
    path: str
    record: dict[str, Any]
    heartbeat_s: float
    depth: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    lost: bool = False
    etag: str = ""


_held: dict[str, _Lease] = {}
_held_lock = threading.Lock()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def read_lease(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """The lock record at ``path`` with its ``heartbeat`` (epoch seconds), or ``None``.

    The heartbeat is the later of the recorded one and the file's modification time
    (which the holder's heartbeat thread renews on a local or network file system).
    A file that is not JSON (a writer that died mid-write) gives a record with only
    its heartbeat, which expires like any other.

    Parameters
    ----------
    fs
        The store's file system.
    path
        The lock file.

    Returns
    -------
    dict or None
        ``None`` when there is no lock file.
    """
    try:
        # metadata first: on S3 its ETag is then never newer than the bytes read, so a
        # conditional write based on it fails rather than overwrite a newer record
        info = fs.info(path)
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not a mapping")
    except ValueError:
        record = {"token": f"unreadable-{hash(raw) & 0xFFFFFFFF:08x}"}
    beats = [_epoch(v) for v in (record.get("heartbeat"), *_file_times(info))]
    beats = [b for b in beats if b is not None]
    record["heartbeat"] = max(beats) if beats else 0.0
    if conditional.supported(fs) and info.get("ETag"):
        record["etag"] = str(info["ETag"])
    return record


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:  # fsspec's naive times are UTC
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _file_times(info: dict[str, Any]) -> list[Any]:
    """The file's modification time as fsspec names it (local ``created`` is a ctime)."""
    # local: mtime; memory: created; s3 / gcs / azure: LastModified / updated / last_modified
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return [info[key]]
    return []


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def lease_expired(
    record: dict[str, Any], *, host: str, now: float | None = None, ttl_s: float = DEFAULT_TTL_S
) -> bool:
    """Whether the holder of ``record`` is known to be gone, so its lock may be taken.

    Parameters
    ----------
    record
        A lock record from :func:`read_lease`.
    host
        The host name of the process that asks.  A holder on the same host whose
        process no longer exists is gone at once; any other holder once its lease ran
        out.
    now
        The asker's clock (default: ``time.time()``).
    ttl_s
        The TTL for a record that does not state its own (an older lock file).

    Returns
    -------
    bool
    """
    now = time.time() if now is None else now
    if record.get("host") == host and "pid" in record and not _pid_alive(record["pid"]):
        return True
    ttl = record.get("ttl_s")
    ttl = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else ttl_s
    return now - float(record.get("heartbeat", 0.0)) > ttl


def _create_exclusive(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> str:
    """Create ``path`` holding ``payload``; ``FileExistsError`` when it exists.

    Returns the new object's ETag on S3, else ``""``.
    """
    if is_local(fs):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return ""
    if conditional.supported(fs):
        return conditional.create(fs, path, payload)
    # other object stores have no exclusive create: best effort (see the module notes)
    if fs.exists(path):
        raise FileExistsError(path)
    fs.pipe_file(path, payload)
    return ""


def _replace_file(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> None:
    """Write ``payload`` to a temporary sibling, then move it over ``path``."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    if is_local(fs):
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    else:
        fs.pipe_file(tmp, payload)
        fs.mv(tmp, path)


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path)


def _take_over(
    fs: fsspec.AbstractFileSystem, path: str, stale: dict[str, Any], payload: bytes
) -> str | None:
    """Replace the stale lock ``stale`` by ``payload``; None when another taker won.

    Returns the new ETag on S3 (``""`` elsewhere) when this taker won.
    """
    if conditional.supported(fs) and stale.get("etag"):
        try:
            return conditional.swap(fs, path, payload, stale["etag"])
        except conditional.ConditionFailed:
            return None  # renewed, released or taken meanwhile: look again
    claim = f"{path}{_CLAIM}{stale.get('token', 'none')}"
    try:
        _create_exclusive(fs, claim, payload)
    except FileExistsError:
        # another taker is replacing this very holder; its claim is dropped once it is
        # as old as a lease (that taker died between its claim and its replace)
        ttl = stale.get("ttl_s") if isinstance(stale.get("ttl_s"), (int, float)) else DEFAULT_TTL_S
        with contextlib.suppress(FileNotFoundError):
            stamps = [t for t in map(_epoch, _file_times(fs.info(claim))) if t is not None]
            if stamps and time.time() - max(stamps) > ttl:
                _remove(fs, claim)
        return None
    try:
        now = read_lease(fs, path)
        if now is None or now.get("token") != stale.get("token"):
            return None  # released or replaced before our claim: look again
        _replace_file(fs, path, payload)
        return ""
    finally:
        _remove(fs, claim)


def _beat(lease: _Lease) -> None:
    """The heartbeat thread: renew the lease until told to stop."""
    token = lease.record["token"]
    while not lease.stop.wait(lease.heartbeat_s):
        try:
            current = read_lease(lease.fs, lease.path)
            if current is None or current.get("token") != token:
                lease.lost = True
                log.error(
                    "store lock %s was taken over by %s while held by run %s: its lease "
                    "expired (no heartbeat for %ss)", lease.path,
                    (current or {}).get("owner"), lease.record.get("owner"),
                    lease.record.get("ttl_s"))
                return
            now = time.time()
            if is_local(lease.fs):
                os.utime(lease.path, (now, now))
            elif lease.etag:
                lease.record["heartbeat"] = now
                try:
                    lease.etag = conditional.swap(
                        lease.fs, lease.path, json.dumps(lease.record).encode(), lease.etag
                    )
                except conditional.ConditionFailed:
                    lease.lost = True
                    log.error("store lock %s was taken over while held by run %s",
                              lease.path, lease.record.get("owner"))
                    return
            else:
                lease.record["heartbeat"] = now
                _replace_file(lease.fs, lease.path, json.dumps(lease.record).encode())
        except OSError as err:  # a file-system hiccup: try again at the next beat
            log.warning("store lock %s: heartbeat failed (%s)", lease.path, err)


def _locked_error(store: str, held: dict[str, Any]) -> StoreLockedError:
    beat = held.get("heartbeat")
    since = f", last heartbeat {_iso(beat)}" if isinstance(beat, (int, float)) and beat else ""
    return StoreLockedError(
        f"store {store!r} is locked by run {held.get('owner')} (pid {held.get('pid')} on "
        f"{held.get('host')}, since {held.get('since')}{since}, lease "
        f"{held.get('ttl_s')} s); wait for it to finish"
    )


@contextlib.contextmanager
def store_lock(
    store: str,
    name: str,
    *,
    owner: str,
    host: str | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    heartbeat_s: float | None = None,
    wait_s: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Hold the store's ``name`` write lock (a lease) for the duration of the block.

    Two runs that both write the store (two nightly runs, say, on two hosts) must
    never overlap.  The lock is a file ``locks/<name>.lock`` created exclusively; it
    records the owner, host, pid, a token, the TTL and the heartbeat, which a daemon
    thread renews every ``heartbeat_s`` while the block runs.  A lock whose holder died
    on this host (a crash, SIGKILL) is taken over at once; one whose lease expired (no
    heartbeat for its TTL: a crashed or killed process on another host) is taken over
    by any host.  The lock is re-entrant within one process (a flow holding it may call
    subflows that take it too).

    Parameters
    ----------
    store
        Store URL or path.
    name
        Lock name (e.g. ``"write"``).
    owner
        Who takes it (a run id), recorded for the error message of the next taker.
    host
        The host name recorded and compared (default: ``socket.gethostname()``); two
        processes presenting different names treat each other as on different hosts.
    ttl_s
        Lease time to live: seconds without a heartbeat after which another host may
        take the lock over.
    heartbeat_s
        Seconds between heartbeats (default: a sixth of ``ttl_s``).
    wait_s
        While the lock is held by another live holder, keep trying for this long
        before giving up (default: give up at once).

    Yields
    ------
    dict
        The lock record.

    Raises
    ------
    StoreLockedError
        Another live holder has the lock (after ``wait_s``).
    ValueError
        ``ttl_s`` or ``heartbeat_s`` is not positive, or the heartbeat is not shorter
        than the TTL.

    Notes
    -----
    On S3 the lease uses conditional writes (see the module docstring).  On other
    object stores exclusive creation is not atomic; run one scheduler per store there,
    or use a Prefect concurrency limit (see ``deploy/README.md``).
    """
    beat = ttl_s / 6 if heartbeat_s is None else heartbeat_s
    if not (ttl_s > 0 and 0 < beat < ttl_s):
        raise ValueError(f"store lock: need 0 < heartbeat_s ({beat}) < ttl_s ({ttl_s})")
    host = host or socket.gethostname()
    fs, root = store_root(store)
    path = join(root, layout.lock(name))
    key = f"{fs.protocol}:{path}"
    with _held_lock:
        mine = _held.get(key)
        if (mine is not None and not mine.lost and mine.record.get("pid") == os.getpid()
                and mine.record.get("host") == host):
            mine.depth += 1  # re-entered by the same process (a flow and its subflows)
        else:
            mine = None
    if mine is not None:
        try:
            yield mine.record
        finally:
            with _held_lock:
                mine.depth -= 1
        return

    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    now = time.time()
    record = {"owner": owner, "host": host, "pid": os.getpid(),
              "token": f"{host}-{os.getpid()}-{uuid.uuid4().hex}", "since": _iso(now),
              "ttl_s": ttl_s, "heartbeat": now}
    payload = json.dumps(record).encode()
    deadline = time.monotonic() + wait_s
    delay = min(0.05, beat)
    while True:
        try:
            etag = _create_exclusive(fs, path, payload)
            break
        except FileExistsError:
            held = read_lease(fs, path)
            if held is None:
                continue  # released meanwhile: try again at once
            taken = _take_over(fs, path, held, payload) if lease_expired(held, host=host) else None
            if taken is not None:
                etag = taken
                log.warning(
                    "store %s: took the %s lock over from run %s on %s (holder gone or "
                    "lease expired)", store, name, held.get("owner"), held.get("host"))
                break
            if time.monotonic() >= deadline:
                raise _locked_error(store, held) from None
        time.sleep(delay)
        delay = min(delay * 2, beat, 1.0)

    lease = _Lease(fs=fs, path=path, record=record, heartbeat_s=beat, etag=etag)
    lease.thread = threading.Thread(target=_beat, args=(lease,), daemon=True,
                                    name=f"medpipe-lease-{name}")
    lease.thread.start()
    with _held_lock:
        _held[key] = lease
    try:
        yield record
    finally:
        lease.stop.set()
        lease.thread.join(timeout=10)
        with _held_lock:
            _held.pop(key, None)
        if lease.etag:
            conditional.delete(fs, path, lease.etag)  # not if another holder took it
        else:
            current = read_lease(fs, path)
            if current is not None and current.get("token") == record["token"]:
                _remove(fs, path)
