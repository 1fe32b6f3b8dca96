"""Environment defaults: every MEDPIPE_* default is read by medpipe.config.env_defaults."""

from __future__ import annotations

from pathlib import Path

from medpipe.config import DEFAULT_CLUSTER_CONFIG, EnvDefaults, env_defaults


def test_unset_and_empty_values_are_defaults() -> None:
    assert env_defaults({}) == EnvDefaults()
    empty = env_defaults({"MEDPIPE_TZ": "", "MEDPIPE_ARCHIVE": "", "MEDPIPE_SAMPLE_NPZ": ""})
    assert empty.timezone == "UTC" and empty.archive is None and empty.sample_npz is None
    assert env_defaults({}).cluster_config == DEFAULT_CLUSTER_CONFIG == Path("deploy/cluster")


def test_values_are_read() -> None:
    env = env_defaults(
        {
            "MEDPIPE_ARCHIVE": "/a",
            "MEDPIPE_STORE": "s3://b/s.zarr",
            "MEDPIPE_TZ": "Europe/Paris",
            "MEDPIPE_CLUSTER_CONFIG": "/etc/medpipe/cluster",
            "MEDPIPE_SAMPLE_NPZ": "/x/b.npz",
            "MEDPIPE_SECRET": "s",
            "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        }
    )
    assert env == EnvDefaults(
        archive="/a",
        store="s3://b/s.zarr",
        timezone="Europe/Paris",
        cluster_config=Path("/etc/medpipe/cluster"),
        sample_npz=Path("/x/b.npz"),
        secret_set=True,
        prefect_api="http://127.0.0.1:4200/api",
    )
    assert not hasattr(env, "secret")  # whether it is set, never its value


def test_the_process_environment_is_the_default(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MEDPIPE_STORE", "/from/env")
    assert env_defaults().store == "/from/env"
