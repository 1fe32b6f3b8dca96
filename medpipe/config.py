"""Configuration: the pseudonymisation secret and run settings.

This is the one module that reads the environment.  Stages receive what they
need as explicit keyword arguments.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from medpipe.errors import ConfigError

__all__ = ["SECRET_ENV", "DEMO_SECRET", "resolve_secret", "load_config"]

C = TypeVar("C")

log = logging.getLogger(__name__)

#: Environment variable holding the HMAC secret used for pseudonymous keys.
SECRET_ENV = "MEDPIPE_SECRET"

#: The demo's well-known secret.  Keys made with it are *not* pseudonymous to anyone
#: who has read this file; never use it on a real archive.
DEMO_SECRET = "medpipe-demo-secret-NOT-FOR-REAL-DATA"


_warned = False  # the demo-secret warning is logged once per process


def resolve_secret(secret: str | None = None, *, allow_demo: bool = False) -> bytes:
    """Return the secret for keyed hashes of UIDs.

    Parameters
    ----------
    secret
        An explicit secret, e.g. one a Prefect flow read from a ``Secret`` block.
        Takes precedence over the environment.
    allow_demo
        If no secret is configured, fall back to :data:`DEMO_SECRET` with a warning
        (logging a warning once) instead of failing.  Only the demo should pass ``True``.

    Returns
    -------
    bytes
        The secret, UTF-8 encoded.

    Raises
    ------
    ConfigError
        If no secret is configured and ``allow_demo`` is false.
    """
    value = secret or os.environ.get(SECRET_ENV)
    if value:
        return value.encode()
    if allow_demo:
        global _warned
        if _warned:
            return DEMO_SECRET.encode()
        _warned = True
        msg = (
            f"{SECRET_ENV} is not set: using the public demo secret. Pseudonymous keys "
            "made with it can be recomputed by anyone; set it before ingesting real data."
        )
        log.warning(msg)
        return DEMO_SECRET.encode()
    raise ConfigError(
        f"No pseudonymisation secret: set the {SECRET_ENV} environment variable, "
        "create a Prefect Secret block named 'medpipe-secret', or pass --demo-secret "
        "for a throw-away run."
    )


def load_config(cls: type[C], path: str | Path | None) -> C:
    """Read a stage config from a YAML file, or the stage's default without one.

    Parameters
    ----------
    cls
        The config class (``PreprocessConfig``, ``FeatureConfig`` …).  Its ``from_yaml``
        and ``default`` class methods are used where it has them.
    path
        The YAML file, or ``None`` for the default config.

    Returns
    -------
    C
        The validated, frozen config.

    Raises
    ------
    ConfigError
        The file is missing or its content is not a valid config; the message names
        the file and the reason.
    """
    import yaml
    from pydantic import ValidationError

    if path is None:
        return cls.default() if hasattr(cls, "default") else cls()  # type: ignore[attr-defined]
    path = Path(path)
    try:
        if hasattr(cls, "from_yaml"):
            return cls.from_yaml(path)  # type: ignore[attr-defined]
        data: Any = yaml.safe_load(path.read_text()) or {}
        return cls.model_validate(data)  # type: ignore[attr-defined]
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as err:
        if isinstance(err, ConfigError) and str(path) in str(err):
            raise
        raise ConfigError(f"{path}: {err}") from None


# --------------------------------------------------------------------------- environment
# Every MEDPIPE_* default that is not a secret is read here, and only here.  (Kept at
# the end of the module, with its own imports, so the config models above stay apart.)
from collections.abc import Mapping  # noqa: E402
from dataclasses import dataclass  # noqa: E402

__all__ += [
    "ARCHIVE_ENV",
    "STORE_ENV",
    "TZ_ENV",
    "CLUSTER_CONFIG_ENV",
    "SAMPLE_NPZ_ENV",
    "PREFECT_API_ENV",
    "DEFAULT_CLUSTER_CONFIG",
    "EnvDefaults",
    "env_defaults",
]

#: Archive root default of ``medpipe serve`` (and ``deploy/prefect.yaml``).
ARCHIVE_ENV = "MEDPIPE_ARCHIVE"
#: Store default of ``medpipe serve`` (and ``deploy/prefect.yaml``).
STORE_ENV = "MEDPIPE_STORE"
#: IANA zone of the nightly schedule of ``medpipe serve`` (and ``deploy/prefect.yaml``).
TZ_ENV = "MEDPIPE_TZ"
#: Folder holding the ``--cluster slurm|kubernetes`` files (``<kind>.yaml``).
CLUSTER_CONFIG_ENV = "MEDPIPE_CLUSTER_CONFIG"
#: A MedMNIST ``.npz`` the demo uses instead of the packaged BreastMNIST file.
SAMPLE_NPZ_ENV = "MEDPIPE_SAMPLE_NPZ"
#: Set when the runs report to a Prefect server (Prefect's own setting).
PREFECT_API_ENV = "PREFECT_API_URL"

#: Where ``--cluster slurm|kubernetes`` looks without ``$MEDPIPE_CLUSTER_CONFIG``:
#: ``deploy/cluster`` under the current directory (the checkout root).
DEFAULT_CLUSTER_CONFIG = Path("deploy") / "cluster"


@dataclass(frozen=True)
class EnvDefaults:
    """The environment's defaults (``None`` where a variable is not set).

    Attributes
    ----------
    archive, store
        ``$MEDPIPE_ARCHIVE``, ``$MEDPIPE_STORE``.
    timezone
        ``$MEDPIPE_TZ``, default ``UTC``.
    cluster_config
        ``$MEDPIPE_CLUSTER_CONFIG``, default :data:`DEFAULT_CLUSTER_CONFIG`.
    sample_npz
        ``$MEDPIPE_SAMPLE_NPZ``.
    secret_set
        Whether ``$MEDPIPE_SECRET`` is set (its value is not kept here).
    prefect_api
        ``$PREFECT_API_URL``.
    """

    archive: str | None = None
    store: str | None = None
    timezone: str = "UTC"
    cluster_config: Path = DEFAULT_CLUSTER_CONFIG
    sample_npz: Path | None = None
    secret_set: bool = False
    prefect_api: str | None = None


def env_defaults(environ: Mapping[str, str] | None = None) -> EnvDefaults:
    """Read the environment's defaults.

    Parameters
    ----------
    environ
        The environment (default :data:`os.environ`); empty values count as unset.

    Returns
    -------
    EnvDefaults
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    npz = get(SAMPLE_NPZ_ENV)
    return EnvDefaults(
        archive=get(ARCHIVE_ENV),
        store=get(STORE_ENV),
        timezone=get(TZ_ENV) or "UTC",
        cluster_config=Path(get(CLUSTER_CONFIG_ENV) or DEFAULT_CLUSTER_CONFIG),
        sample_npz=Path(npz) if npz else None,
        secret_set=bool(get(SECRET_ENV)),
        prefect_api=get(PREFECT_API_ENV),
    )
