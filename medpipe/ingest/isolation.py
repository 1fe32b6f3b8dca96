"""Crash isolation: a file whose decoder kills its process is found and quarantined.

A corrupt file can crash the decoder itself (a segfault in a C library, memory
exhaustion, a decoder that never returns).  On a Dask cluster that kills the worker
running the batch, and the batch fails as a whole.  :func:`isolate_batch` then takes
the batch apart: it ingests it in a fresh child process, and when that child dies (or
exceeds its time), splits the batch in halves and tries each in its own fresh process,
down to the single series that kills its process.  That series' files are quarantined
with the reason (``decoder process died (signal 11)``, ``decode exceeded 60 s``); every
other series of the batch is ingested as usual.  The quarantine rows carry the files'
size, mtime and hash, so the next run treats the file as unchanged (it is not retried)
until the file changes.

:func:`bisect` is the decision itself (pure, on any items and any ``run`` callable);
:func:`isolate_batch` applies it with spawned child processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from medpipe.ingest.planning import GroupPlan, _row
from medpipe.ingest.writing import ingest_batch

__all__ = [
    "DECODE_TIMEOUT_S",
    "Crash",
    "bisect",
    "crash_reason",
    "is_worker_death",
    "isolate_batch",
    "run_in_child",
]

#: Default seconds a child process may spend per series before it counts as hung.
DECODE_TIMEOUT_S = 60.0

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Crash:
    """A child process that did not return: how it ended, as a one-line reason."""

    reason: str


def crash_reason(exitcode: int | None, *, timeout_s: float | None = None) -> str:
    """The one-line quarantine reason for a child that died or hung.

    Parameters
    ----------
    exitcode
        ``multiprocessing.Process.exitcode``: negative for a signal, ``None`` when it was
        still running at the deadline (and was killed).
    timeout_s
        The deadline it exceeded (with ``exitcode=None``).

    Returns
    -------
    str
        ``decoder process died (signal 11)``, ``decoder process died (exit code 1)`` or
        ``decode exceeded 60 s``.
    """
    if exitcode is None:
        return f"decode exceeded {timeout_s:g} s"
    if exitcode < 0:
        return f"decoder process died (signal {-exitcode})"
    return f"decoder process died (exit code {exitcode})"


def bisect(
    items: Sequence[T], run: Callable[[Sequence[T]], list[R] | Crash]
) -> tuple[list[R], list[tuple[T, str]]]:
    """Run ``items``; when the run crashes, run each half separately, recursively.

    Parameters
    ----------
    items
        The work (e.g. the series plans of a failed batch).
    run
        Runs a sub-sequence in a fresh process: its results, or a :class:`Crash`.

    Returns
    -------
    results, crashed
        The results of every run that finished, and each single item whose own run
        crashed, with the reason.
    """
    if not items:
        return [], []
    out = run(items)
    if not isinstance(out, Crash):
        return list(out), []
    if len(items) == 1:
        return [], [(items[0], out.reason)]
    mid = len(items) // 2
    left, left_bad = bisect(items[:mid], run)
    right, right_bad = bisect(items[mid:], run)
    return left + right, left_bad + right_bad


def _child(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        result = ("ok", fn(*args, **kwargs))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which re-raises
        result = ("error", err)
    try:
        conn.send(result)
    except Exception as err:  # noqa: BLE001 - an unpicklable error: send its text
        conn.send(("error", RuntimeError(f"{type(result[1]).__name__}: {err}")))
    conn.close()


def run_in_child(
    fn: Callable[..., R], *args: Any, timeout_s: float, **kwargs: Any
) -> R | Crash:
    """Call ``fn(*args, **kwargs)`` in a fresh spawned process, with a deadline.

    Returns
    -------
    object or Crash
        ``fn``'s result, or a :class:`Crash` when the process died or ran past
        ``timeout_s`` (it is then killed).  An exception raised by ``fn`` is re-raised
        here (it is not a crash: e.g. a store error).
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(timeout_s):
            try:
                status, value = parent.recv()
            except EOFError:  # died without answering
                proc.join()
                return Crash(crash_reason(proc.exitcode))
            proc.join()
            if status == "error":
                raise value
            return value
        if proc.is_alive():
            proc.kill()
            proc.join()
            return Crash(crash_reason(None, timeout_s=timeout_s))
        proc.join()
        return Crash(crash_reason(proc.exitcode))
    finally:
        parent.close()
        if proc.is_alive():  # pragma: no cover - interrupted while waiting
            proc.kill()
            proc.join()


def is_worker_death(err: BaseException) -> bool:
    """Whether a batch failed because its worker process died (not a Python error).

    ``distributed`` raises ``KilledWorker`` once a task's workers died
    ``distributed.scheduler.allowed-failures`` + 1 times; a broken process pool raises
    ``BrokenProcessPool``.  A Prefect task reports these as a crashed state whose
    message names them.
    """
    names = {type(e).__name__ for e in _chain(err)}
    if names & {"KilledWorker", "BrokenProcessPool", "CommClosedError"}:
        return True
    text = str(err)
    return "KilledWorker" in text or "worker" in text.lower() and "died" in text.lower()


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def isolate_batch(
    archive: str,
    store: str,
    groups: Sequence[GroupPlan],
    *,
    secret: bytes,
    run_id: str,
    timeout_s: float = DECODE_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """Ingest a batch whose worker died: bisect it on fresh processes.

    Parameters
    ----------
    archive
        Archive root.
    store
        Store URL or path.
    groups
        The batch's series plans.
    secret
        Pseudonymisation secret.
    run_id
        Id of the ingest run.
    timeout_s
        Seconds per series a child process may take (a run of ``k`` series gets
        ``k * timeout_s``); past that it is killed and, for one series, the reason is
        ``decode exceeded <timeout_s> s``.

    Returns
    -------
    list of dict
        Catalog rows of every series: as :func:`~medpipe.ingest.ingest_batch` returns
        them, and ``quarantined`` with the crash reason for the files of each series
        whose reading killed its process.
    """

    def run(part: Sequence[GroupPlan]) -> list[dict[str, Any]] | Crash:
        return run_in_child(
            ingest_batch, archive, store, list(part), secret=secret, run_id=run_id,
            timeout_s=timeout_s * len(part),
        )

    rows, crashed = bisect(list(groups), run)
    for group, reason in crashed:
        rows.extend(
            _row(m, series=group.series, kind=group.kind, status="quarantined", reason=reason)
            for m in group.members
        )
    return rows
