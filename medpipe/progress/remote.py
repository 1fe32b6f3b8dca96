"""Progress of Dask work: chunks counted as they finish, reports from tasks on workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from medpipe.progress.bars import Bars, Report

__all__ = ["persist_with_progress", "relay", "remote_report"]

#: Seconds between two events of one description (its last event is always sent).
EVENT_INTERVAL_S = 0.1


def persist_with_progress(ds: Any, *, var: str, description: str, report: Report | None) -> Any:
    """Compute a lazy :class:`xarray.Dataset`, reporting the rows of ``var`` as they finish.

    The unit is a row (the first axis of ``ds[var]``: a sample), and a block of rows
    counts once all its chunks are computed.  On a distributed client the blocks are
    counted as their futures complete (:func:`distributed.as_completed`), and the
    result holds those futures, so the write that follows does not compute them again;
    on a local scheduler a :class:`dask.callbacks.Callback` counts them as their tasks
    finish.

    Parameters
    ----------
    ds
        Dataset with Dask-backed variables.
    var
        The variable whose rows are counted.
    description
        The work's name in the report.
    report
        Where to report; ``None`` returns ``ds`` unchanged (still lazy).

    Returns
    -------
    xarray.Dataset
        ``ds`` persisted (in memory, or on the cluster).
    """
    import dask
    from dask.callbacks import Callback
    from dask.core import flatten

    if report is None or not dask.is_dask_collection(ds[var].data):
        return ds
    arr = ds[var].data
    total, rows = int(arr.shape[0]), arr.chunks[0]
    pending: dict[int, set] = {}
    for key in flatten(arr.__dask_keys__()):
        pending.setdefault(key[1], set()).add(key)
    block_of = {key: i for i, keys in pending.items() for key in keys}
    done = [0]
    lock = threading.Lock()

    def finished(key: Any) -> None:
        with lock:
            i = block_of.get(key)
            if i is None or key not in pending[i]:
                return
            pending[i].discard(key)
            if pending[i]:
                return
            done[0] += rows[i]
            now = done[0]
        report(description, now, total)

    report(description, 0, total)
    with Callback(posttask=lambda key, *_: finished(key)):  # local schedulers
        out = ds.persist()
    futures = []
    with suppress(ImportError):
        from distributed import as_completed, futures_of

        futures = [f for f in futures_of(out) if f.key in block_of]
    if futures:
        for fut in as_completed(futures):
            if fut.status == "error":
                fut.result()  # raises the task's error here
            finished(fut.key)
    return out


@contextmanager
def relay(client: Any, *, wait_s: float = 10.0) -> Iterator[str]:
    """Draw in this process the bars that tasks report with :func:`remote_report`.

    Parameters
    ----------
    client
        A :class:`distributed.Client` of the cluster the tasks run on.
    wait_s
        After the block (when it did not raise), seconds to wait at most for the
        tasks' last reports to arrive.

    Yields
    ------
    str
        The event topic to give the tasks.
    """
    topic = f"medpipe-progress-{uuid.uuid4().hex}"
    bars = Bars()
    runs = {"begun": 0, "ended": 0}
    settled = threading.Event()

    def handler(event: tuple[float, Any]) -> None:
        msg = event[1]
        if "begin" in msg:
            runs["begun"] += 1
            settled.clear()
        elif "end" in msg:
            runs["ended"] += 1
            if runs["ended"] >= runs["begun"]:
                settled.set()
        else:
            bars(str(msg["description"]), int(msg["done"]), int(msg["total"]))

    client.subscribe_topic(topic, handler)
    ok = False
    try:
        yield topic
        ok = True
    finally:
        if ok:
            settled.wait(wait_s)
        with suppress(Exception):
            client.unsubscribe_topic(topic)
        bars.close()


def _event_sender() -> Callable[[str, Any], None] | None:
    """``log_event`` of this Dask worker, else of the current client, else ``None``."""
    try:
        from distributed import get_client, get_worker
    except ImportError:
        return None
    try:
        return get_worker().log_event
    except ValueError:
        pass
    try:
        return get_client().log_event
    except ValueError:
        return None


@contextmanager
def remote_report(topic: str | None) -> Iterator[Report | None]:
    """A :data:`~medpipe.progress.Report` that reaches the :func:`relay` on ``topic``.

    Use it in a task on a Dask worker (``Worker.log_event``), or in any process with a
    current client of the cluster (``Client.log_event``).  A description's reports go
    at most every 0.1 s, and always when it is complete.

    Parameters
    ----------
    topic
        The relay's topic; ``None`` (or no Dask at hand) yields ``None``: no reports.

    Yields
    ------
    Report or None
    """
    send = None if topic is None else _event_sender()
    if send is None:
        yield None
        return
    token = uuid.uuid4().hex
    last: dict[str, float] = {}

    def report(description: str, done: int, total: int) -> None:
        now = time.monotonic()
        if 0 < done < total and now - last.get(description, -EVENT_INTERVAL_S) < EVENT_INTERVAL_S:
            return
        last[description] = now
        send(topic, {"description": description, "done": int(done), "total": int(total)})

    send(topic, {"begin": token})
    try:
        yield report
    finally:
        send(topic, {"end": token})
