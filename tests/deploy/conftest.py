"""Shared helpers for the deploy/ recipe tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def load_yaml(name: str) -> Any:
    """Parse ``deploy/<name>`` with the safe loader."""
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="session")
def deploy_dir() -> Path:
    """The ``deploy/`` folder of this checkout."""
    return DEPLOY
