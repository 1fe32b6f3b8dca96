"""A real Prefect server (SQLite) and ``medpipe serve``, each in its own process.

Both run for the whole session, in their own process groups, with their output in log
files that the tests quote when something fails. Every wait is bounded, and teardown
kills each process tree, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: Bounds of the waits (seconds); a nightly run over the small archive takes ~45 s here.
SERVER_START = 120.0
DEPLOYMENTS_READY = 90.0
RUN_DONE = 240.0

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A subprocess in its own session, its output going to ``log``."""

    name: str
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, cmd: list[str], *, env: dict[str, str], log: Path) -> Service:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, proc, log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 12_000) -> str:
        """The last ``tail`` characters the process wrote."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} output ({self.log}) ---\n{text[-tail:]}"

    def stop(self, grace: float = 10.0) -> None:
        """SIGINT the process group, then SIGKILL the whole tree after ``grace`` seconds."""
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in tree:  # flow-run subprocesses and Dask workers may sit in other groups
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:  # pragma: no cover - nothing left to try
            pass


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    services: tuple[Service, ...] = (),
    interval: float = 0.5,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    Fails at once, with the output, when one of ``services`` has exited.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for s in services:
            if not s.alive():
                pytest.fail(
                    f"{s.name} exited ({s.proc.returncode}) while waiting for {what}\n" + s.output()
                )
        try:
            last = check()
        except (httpx.HTTPError, OSError) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    logs = "\n".join(s.output() for s in services)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{logs}")


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any PREFECT_* setting, plus a private PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class PrefectServer:
    """A running ``prefect server start`` and an HTTP client on its REST API."""

    url: str
    service: Service
    client: httpx.Client = field(repr=False)

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def get(self, path: str) -> Any:
        r = self.client.get(f"{self.api}{path}")
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict | None = None) -> Any:
        """POST; a 503 (Prefect's retryable answer: SQLite busy) is retried, as its client does."""
        for _attempt in range(3):
            r = self.client.post(f"{self.api}{path}", json=body or {})
            if r.status_code != 503:
                break
            time.sleep(2)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` with the embedded SQLite database, on a free port."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        home,
        # the UI builds its API address from these, not from --host/--port
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"{url}/api",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        # schedule the cron runs soon after the deployment registers (default: every 60 s)
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        # a 503 (retryable) answer names its cause in server.log, which failures quote
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",
    )
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    service = Service.start("prefect server", cmd, env=env, log=home / "server.log")
    client = httpx.Client(timeout=30.0)
    try:
        server = PrefectServer(url, service, client)
        wait_for(
            lambda: client.get(f"{url}/api/health").status_code == 200,
            timeout=SERVER_START,
            what="the Prefect server's /api/health",
            services=(service,),
        )
        yield server
    finally:
        client.close()
        service.stop()


def small_archive(root: Path) -> Path:
    """Two real DICOM series from pydicom's test files and one file ingest must quarantine."""
    from pydicom.data import get_testdata_file

    root.mkdir(parents=True, exist_ok=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), root / name)
    (root / "not-dicom.dcm").write_bytes(b"this is not a DICOM file\n" * 8)
    return root


@dataclass
class Served:
    """``medpipe serve`` registered against :class:`PrefectServer`."""

    server: PrefectServer
    service: Service
    archive: Path
    store: Path
    deployments: dict[str, dict]

    def services(self) -> tuple[Service, ...]:
        return (self.server.service, self.service)

    def wait_run(self, run_id: str, timeout: float = RUN_DONE) -> dict:
        """Poll the flow run until it reaches a terminal state; return it."""

        def done() -> dict | None:
            run = self.server.get(f"/flow_runs/{run_id}")
            return run if run["state_type"] in TERMINAL else None

        return wait_for(
            done, timeout=timeout, what=f"flow run {run_id} to finish", services=self.services()
        )

    def explain(self, run: dict) -> str:
        """The run's final state and the served process's output, for assertion messages."""
        state = run.get("state") or {}
        return (
            f"flow run {run['id']} ended {run['state_type']}: {state.get('message')}\n"
            + self.service.output()
        )


@pytest.fixture(scope="session")
def served(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``medpipe serve`` over a small real archive, with every deployment registered."""
    work = tmp_path_factory.mktemp("medpipe-serve")
    archive = small_archive(work / "archive")
    store = work / "store.zarr"
    env = base_env(
        work / "prefect-home",
        PREFECT_API_URL=prefect_server.api,
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        MEDPIPE_SECRET="test-secret",
    )
    cmd = [
        str(BIN / "medpipe"),
        "serve",
        "--archive",
        str(archive),
        "--store",
        str(store),
        "--cluster",
        "local:1",
    ]
    service = Service.start("medpipe serve", cmd, env=env, log=work / "serve.log")
    try:
        expected = {"nightly", "ingest", "preprocess", "features"}

        def registered() -> dict[str, dict] | None:
            deps = {d["name"]: d for d in prefect_server.post("/deployments/filter")}
            return deps if expected <= deps.keys() else None

        deps = wait_for(
            registered,
            timeout=DEPLOYMENTS_READY,
            what=f"deployments {sorted(expected)} to be registered",
            services=(prefect_server.service, service),
        )
        # the runner polls only once it is serving: wait for its banner too
        wait_for(
            lambda: "being served" in service.log.read_text(errors="replace"),
            timeout=DEPLOYMENTS_READY,
            what="medpipe serve to start polling",
            services=(prefect_server.service, service),
        )
        yield Served(prefect_server, service, archive, store, deps)
    finally:
        service.stop()


@contextmanager
def moto_server(state: Path, **extra_env: str) -> Iterator[int]:
    """``make s3`` (moto's S3 server) on a free port, boto pointed at it; stopped after.

    Yields the port.  The environment (``AWS_ENDPOINT_URL``, test keys, ``extra_env``) is
    set for this process and the processes it starts; a server that cannot start fails
    the test with the target's output.
    """
    import s3fs

    from tests.conftest import REPO

    port = free_port()
    args = [f"S3_PORT={port}", f"S3_DIR={state}"]
    out = subprocess.run(
        ["make", "-s", "s3", *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    env = pytest.MonkeyPatch()
    try:
        if out.returncode != 0:
            pytest.fail(f"make s3 failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for k, v in extra_env.items():
            env.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()
        yield port
    finally:
        env.undo()
        s3fs.S3FileSystem.clear_instance_cache()
        subprocess.run(["make", "-s", "s3-stop", *args], cwd=REPO, timeout=60)
        assert not (state / "moto.pid").exists()
