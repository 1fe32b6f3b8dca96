"""Shared fixtures: where the real data lives, and skips where it does not."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# flows under test start Prefect's embedded server; its 20 s default start-up wait is
# too short on 2 busy cores (as in CI), and a timeout there is not what a test tests
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``make test`` (pytest-xdist, ``--dist loadgroup``) a test module runs on one
    worker, so its module fixtures (a cluster, a served deployment) start once; the
    integration modules share one group, so their servers (the session's Prefect server,
    Orthanc, moto, SLURM, Chromium) run on one worker, not twice at once."""
    for item in items:
        rel = item.path.relative_to(REPO).as_posix()
        group = "integration" if rel.startswith("tests/integration/") else rel
        item.add_marker(pytest.mark.xdist_group(group))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$MEDPIPE_SHARED_DATA``."""
    return Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The staged real data set (present in CI); skip with the reason where it is absent."""
    root = shared_data_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"shared real data not found at {root} (set MEDPIPE_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def prefect_test_api() -> Iterator[str]:
    """One temporary Prefect API (SQLite) for the whole session; yields its URL.

    Starting Prefect's test server costs several seconds of CPU each time (tens of seconds
    on 2 busy cores), so every module that runs flows in-process, or hands the URL to the
    commands it starts, shares this one instead of starting its own.  Once started it
    stays the current API for the rest of the session, as the flow tests' one always did.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(autouse=True)
def _medpipe_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests use a fixed, non-demo secret so keys are stable and no warning fires."""
    monkeypatch.setenv("MEDPIPE_SECRET", "test-secret")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One XLA compilation cache for this process and the workers (JAX's own setting):
    the CNN fits of a module share batch shapes, so the network compiles about once."""
    path = str(tmp_path_factory.getbasetemp() / "jax-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_COMPILATION_CACHE_DIR", path)
        if "jax" in sys.modules:  # imported already: the variable is read at import
            sys.modules["jax"].config.update("jax_compilation_cache_dir", path)
        yield path
