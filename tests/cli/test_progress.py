"""``progress_bar``: a Rich bar under a terminal, plain lines without one."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import dask

CODE = (
    "from medpipe.progress import progress_bar\n"
    "with progress_bar(20, 'work') as advance:\n"
    "    for _ in range(20):\n"
    "        advance(1)\n"
)


def test_without_a_tty_progress_is_plain_lines() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "work: 2/20 (10%)" in lines
    assert lines[-1] == "work: 20/20 (100%)"
    assert len(lines) == 11
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr


def _pty_run(code: str) -> str:
    main, sub = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=sub, stderr=sub, env=env)
    os.close(sub)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_under_a_pty_progress_is_a_rich_bar() -> None:
    out = _pty_run(CODE)
    assert "\x1b[" in out  # ANSI control sequences: a live bar
    assert "work" in out and "20/20" in out
    assert "(100%)" not in out  # not the plain fallback


LOG_ABOVE = (
    "import logging, time\n"
    "from prefect.logging.handlers import PrefectConsoleHandler\n"
    "from medpipe.progress import progress_bar, route_stderr_handlers\n"
    "log = logging.getLogger('medpipe-test')\n"
    "log.addHandler(PrefectConsoleHandler())\n"
    "log.setLevel('INFO')\n"
    "log.propagate = False\n"
    "assert route_stderr_handlers() >= 1\n"
    "with progress_bar(3, 'work') as advance:\n"
    "    advance(1)\n"
    "    time.sleep(0.3)\n"
    "    log.info('a log line from a task')\n"
    "    time.sleep(0.3)\n"
    "    advance(2)\n"
)


def _screen_lines(out: str) -> list[str]:
    """What each terminal line shows at the end: text after its last carriage return."""
    ansi = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
    rows = out.replace("\r\n", "\n").split("\n")  # the pty turns each \n into \r\n
    return [ansi.sub("", seg.rsplit("\r", 1)[-1]).rstrip() for seg in rows]


def test_a_prefect_log_line_prints_above_a_live_bar() -> None:
    """Prefect's console handler prints through the bars' console, not over the bar."""
    out = _pty_run(LOG_ABOVE)
    assert "\x1b[?25l" in out  # the bar was live when the line was logged
    lines = _screen_lines(out)
    assert "a log line from a task" in lines, lines  # a line of its own, not glued to a bar
    assert any(ln.startswith("work") and "3/3" in ln for ln in lines)


def test_persist_with_progress_counts_rows_on_a_local_scheduler() -> None:
    import dask.array as da
    import numpy as np
    import xarray as xr

    from medpipe.progress import persist_with_progress

    data = np.arange(30.0).reshape(10, 3)
    ds = xr.Dataset({"v": (("row", "col"), da.from_array(data, chunks=(2, 3)) * 2)})
    seen: list[tuple[str, int, int]] = []
    with dask.config.set(scheduler="threads"):
        out = persist_with_progress(ds, var="v", description="rows",
                                    report=lambda *a: seen.append(a))
    np.testing.assert_array_equal(out["v"].values, data * 2)
    assert seen[0] == ("rows", 0, 10) and seen[-1] == ("rows", 10, 10)
    assert [s[1] for s in seen] == [0, 2, 4, 6, 8, 10]  # one report per finished block


def _worker_job(topic: str) -> float:
    """A task that computes a lazy table on the cluster and reports it (as the flows do)."""
    import dask.array as da
    import xarray as xr
    from distributed import worker_client

    from medpipe.progress import persist_with_progress, remote_report

    with worker_client(), remote_report(topic) as report:
        ds = xr.Dataset({"v": (("row",), da.arange(12, chunks=2) * 1.0)})
        out = persist_with_progress(ds, var="v", description="cells", report=report)
        return float(out["v"].sum().compute())


def test_a_worker_task_reports_to_the_bars_of_the_submitting_process(capsys) -> None:
    import dask.array as da
    import numpy as np
    import xarray as xr
    from distributed import Client, LocalCluster

    from medpipe.progress import persist_with_progress, relay

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        with relay(client) as topic:
            total = client.submit(_worker_job, topic, pure=False).result()
        assert total == sum(range(12))
        # on the client: each block is counted as its future completes
        seen: list[tuple[str, int, int]] = []
        ds = xr.Dataset({"v": (("row",), da.from_array(np.arange(8.0), chunks=2) + 1)})
        persist_with_progress(ds, var="v", description="blocks", report=lambda *a: seen.append(a))
    assert [s[1] for s in seen] == [0, 2, 4, 6, 8]
    err = capsys.readouterr().err
    assert "cells: 12/12 (100%)" in err.splitlines(), err  # drawn here, from the worker
    assert "\x1b" not in err


NESTED = (
    "import threading, time\n"
    "from medpipe.progress import Bars, progress_bar\n"
    "with progress_bar(2, 'nightly') as stage:\n"
    "    bars = Bars()\n"
    "    def work():\n"
    "        for i in range(5):\n"
    "            bars('features', i + 1, 5)\n"
    "            time.sleep(0.05)\n"
    "    t = threading.Thread(target=work)\n"
    "    t.start()\n"
    "    t.join()\n"
    "    stage(1)\n"
    "    with progress_bar(3, 'score') as advance:\n"
    "        advance(3)\n"
    "    stage(1)\n"
)


def test_a_bar_opened_under_another_shows_beneath_it() -> None:
    """The nightly stage bar and the stages' own bars (one from a relay thread) share a display."""
    out = _pty_run(NESTED)
    assert out.count("\x1b[?25l") == 1  # one live display for the three bars
    assert "\x1b[1A" in out  # it redraws several rows
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out[out.rindex("nightly"):])
    rows = [r.strip() for r in last.replace("\r\n", "\n").split("\n") if r.strip()]
    assert [r.split()[0] for r in rows] == ["nightly", "features", "score"]
    assert "2/2" in rows[0] and "5/5" in rows[1] and "3/3" in rows[2]


def test_train_steps_count_each_search_the_vote_and_each_refit() -> None:
    import numpy as np

    from medpipe.models.train import train_steps

    y = np.array([0, 1] * 6)
    groups = np.arange(12)
    kinds = ["svm", "logreg", "rf"]
    # selection: 3 searches + the vote, then the refit; 3 outer folds of 4 searches and a
    # refit each; calibration and registration
    assert train_steps(kinds, y, groups, vote=True, large=False, outer_folds=3) == 4 + 1 + 3 * 5 + 1
    # the incremental (large) path has no probabilities for a vote
    assert train_steps(kinds, y, groups, vote=True, large=True, outer_folds=3) == 3 + 1 + 3 * 4 + 1
    # no outer loop: the selection, the refit, registration
    assert train_steps(["logreg"], y, groups, vote=False, large=None, outer_folds=0) == 3
