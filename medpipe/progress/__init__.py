"""Progress of long work: Rich bars on a terminal, plain lines without one.

* :func:`progress_bar` — a bar on stderr while a block runs (the flow process's loops).
* :data:`Report` — ``report(description, done, total)``: what a library function doing
  long work takes as ``progress=``; :func:`persist_with_progress` and :func:`steps`
  call it as real work finishes (Dask chunks, grid searches, fits).
* :class:`Bars` — a :data:`Report` drawing one bar per description in this process.
* :func:`relay` / :func:`remote_report` — a task on a Dask worker reports through Dask's
  structured events (``Worker.log_event`` / ``Client.subscribe_topic``) to the bars of
  the process that submitted it.
* :func:`route_stderr_handlers` — logging handlers that write to stderr (Prefect's
  console handler among them) print above live bars, through the bars' console.

Without a terminal (piped, cron, CI) no bar is drawn: a plain line
``<description>: <done>/<total> (<pct>%)`` goes to stderr at every 10 % step, with no
control characters.  The bars of a process share one live display on one console
(:data:`stderr_console`), so a bar opened while another is live (the nightly stage
bar, then a stage's own) shows beneath it.
"""

from __future__ import annotations

from medpipe.progress.bars import (
    Bars,
    Report,
    Steps,
    progress_bar,
    route_stderr_handlers,
    stderr_console,
    steps,
)
from medpipe.progress.remote import persist_with_progress, relay, remote_report

__all__ = [
    "Report",
    "Bars",
    "Steps",
    "progress_bar",
    "persist_with_progress",
    "steps",
    "relay",
    "remote_report",
    "route_stderr_handlers",
    "stderr_console",
]
