"""Rich progress bars for long work (plain log lines when stderr is not a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Show a progress bar on stderr while the block runs.

    Parameters
    ----------
    total
        Units of work.
    description
        Label shown left of the bar.

    Yields
    ------
    callable
        ``advance(n)`` moves the bar by ``n`` units.

    Notes
    -----
    Without a terminal (piped, cron, CI) no bar is drawn: a plain line
    ``<description>: <done>/<total> (<pct>%)`` goes to stderr at every 10 % step and at
    the end, with no control characters.
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield _plain_advance(total, description)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def _plain_advance(total: int, description: str) -> Callable[[int], None]:
    """An ``advance(n)`` that writes a plain line to stderr at every 10 % step."""
    state = {"done": 0, "step": -1}

    def advance(n: int = 1) -> None:
        state["done"] += n
        done = state["done"]
        pct = 100 if total <= 0 else min(100, 100 * done // total)
        if pct // 10 > state["step"]:
            state["step"] = pct // 10
            sys.stderr.write(f"{description}: {done}/{total} ({pct}%)\n")
            sys.stderr.flush()

    return advance
