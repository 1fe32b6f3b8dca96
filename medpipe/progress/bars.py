"""Bars in this process: one live Rich display on stderr, or plain lines without a TTY."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["Report", "Bars", "Steps", "progress_bar", "steps", "route_stderr_handlers",
           "stderr_console"]

#: ``report(description, done, total)``: ``done`` of ``total`` units of the work named
#: ``description`` are finished (cumulative, so a late or repeated report is harmless).
Report = Callable[[str, int, int], None]

#: The one Rich console of the bars (it follows ``sys.stderr``).
stderr_console = Console(stderr=True)

_lock = threading.RLock()
_live: Progress | None = None
_users = 0


@contextmanager
def _shared_progress() -> Iterator[Progress]:
    """The process's live Progress, started by its first user and stopped by its last."""
    global _live, _users
    with _lock:
        if _live is None:
            _live = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr_console,
                transient=False,
            )
            _live.start()
        _users += 1
        progress = _live
    try:
        yield progress
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                progress.stop()
                _live = None


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Show a progress bar on stderr while the block runs.

    Parameters
    ----------
    total
        Units of work.
    description
        Label shown left of the bar (and first on a plain line).

    Yields
    ------
    callable
        ``advance(n)`` moves the bar by ``n`` units (thread-safe).

    Notes
    -----
    Without a terminal (piped, cron, CI) no bar is drawn: a plain line
    ``<description>: <done>/<total> (<pct>%)`` goes to stderr at every 10 % step and at
    the end, with no control characters.
    """
    if not stderr_console.is_terminal:
        yield _plain_advance(total, description)
        return
    with _shared_progress() as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        try:
            yield advance
        finally:
            progress.stop_task(task)  # its clock stops; the row stays
            progress.refresh()


def _plain_advance(total: int, description: str) -> Callable[[int], None]:
    """An ``advance(n)`` that writes a plain line to stderr at every 10 % step."""
    state = {"done": 0, "step": -1}
    lock = threading.Lock()

    def advance(n: int = 1) -> None:
        with lock:
            state["done"] += n
            done = state["done"]
            pct = 100 if total <= 0 else min(100, 100 * done // total)
            if pct // 10 <= state["step"]:
                return
            state["step"] = pct // 10
            sys.stderr.write(f"{description}: {done}/{total} ({pct}%)\n")
            sys.stderr.flush()

    return advance


class Bars:
    """A :data:`Report` that draws one bar per description in this process.

    A bar opens at its description's first report and closes when ``done`` reaches
    ``total``; reports that go back (a retried task starting over) are ignored until
    they pass the bar.  :meth:`close` (or leaving a ``with`` block) closes the bars
    still open, where they stand.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[AbstractContextManager, Callable[[int], None], list[int]]]
        self._open = {}
        self._closed: set[str] = set()

    def __call__(self, description: str, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` units of ``description`` are finished."""
        with self._lock:
            if description in self._closed or total <= 0:
                return
            if description not in self._open:
                bar = progress_bar(total, description)
                self._open[description] = (bar, bar.__enter__(), [0])
            bar, advance, seen = self._open[description]
            done = min(done, total)
            if done > seen[0]:
                advance(done - seen[0])
                seen[0] = done
            if done >= total:
                del self._open[description]
                self._closed.add(description)
                bar.__exit__(None, None, None)

    def close(self) -> None:
        """Close every bar still open."""
        with self._lock:
            for bar, _, _ in self._open.values():
                bar.__exit__(None, None, None)
            self._closed.update(self._open)
            self._open.clear()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Steps:
    """A step counter reporting ``description``: see :func:`steps`."""

    def __init__(self, report: Report | None, description: str, total: int) -> None:
        self.report, self.description, self.total, self.done = report, description, total, 0
        if report is not None:
            report(description, 0, total)

    def __call__(self, *_: object) -> None:
        """One more step finished (never counts past the total)."""
        self.done = min(self.done + 1, self.total)
        if self.report is not None:
            self.report(self.description, self.done, self.total)

    def finish(self) -> None:
        """The last step finished: report the total."""
        self.done = self.total
        if self.report is not None:
            self.report(self.description, self.total, self.total)


def steps(report: Report | None, description: str, total: int) -> Steps:
    """A step counter: each call reports one more of ``total`` steps of ``description``.

    Parameters
    ----------
    report
        Where to report (``None``: the counter only counts).
    description
        The work's name.
    total
        Steps in all; reported as started (0 done) at once.

    Returns
    -------
    Steps
        ``step(*ignored)`` counts a step; ``step.finish()`` reports the total.
    """
    return Steps(report, description, total)


class _AboveBars(io.TextIOBase):
    """A stderr for other writers: while bars are live, its lines print above them."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        """Write now, or (bars live) print each finished line through the bars' console."""
        with self._lock:
            live = _live
            if live is None:
                self.stream.write(self._pending + text)
                self._pending = ""
                return len(text)
            self._pending += text
            if "\n" not in self._pending:
                return len(text)
            lines, _, self._pending = self._pending.rpartition("\n")
        live.console.print(Text.from_ansi(lines), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        """Flush the real stream."""
        with suppress(Exception):
            self.stream.flush()

    def isatty(self) -> bool:
        """Whether the real stream is a terminal."""
        return self.stream.isatty()

    def fileno(self) -> int:
        """The real stream's file descriptor."""
        return self.stream.fileno()

    def writable(self) -> bool:
        """Always."""
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The real stream's encoding."""
        return getattr(self.stream, "encoding", None) or "utf-8"


def route_stderr_handlers() -> int:
    """Make the logging handlers that write to stderr print above live bars.

    A handler with a Rich console (Prefect's console handler) keeps its console and
    styling; the console's file becomes a stream that, while bars are live, hands each
    line to the bars' console, which prints it above them.  Plain stream handlers on
    stderr get the same stream.  While no bar is live, nothing changes.  Idempotent.

    Returns
    -------
    int
        Handlers routed by this call.
    """
    targets = {id(sys.stderr), id(sys.__stderr__)}
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    routed = 0
    for handler in handlers.values():
        console = getattr(handler, "console", None)
        if isinstance(console, Console):
            if id(console.file) in targets:
                console.file = _AboveBars(console.file)
                routed += 1
        elif isinstance(handler, logging.StreamHandler) and id(handler.stream) in targets:
            handler.setStream(_AboveBars(handler.stream))
            routed += 1
    return routed
