"""``progress_bar``: a Rich bar under a terminal, plain lines without one."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

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


def test_under_a_pty_progress_is_a_rich_bar() -> None:
    main, sub = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", CODE], stdout=sub, stderr=sub, env=env)
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
    assert proc.wait(timeout=120) == 0
    os.close(main)
    out = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in out  # ANSI control sequences: a live bar
    assert "work" in out and "20/20" in out
    assert "(100%)" not in out  # not the plain fallback
