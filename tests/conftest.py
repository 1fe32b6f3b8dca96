"""Shared fixtures: where the real data lives, and skips where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# flows under test start Prefect's embedded server; its 20 s default start-up wait is
# too short on 2 busy cores (as in CI), and a timeout there is not what a test tests
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


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


@pytest.fixture(autouse=True)
def _medpipe_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests use a fixed, non-demo secret so keys are stable and no warning fires."""
    monkeypatch.setenv("MEDPIPE_SECRET", "test-secret")
