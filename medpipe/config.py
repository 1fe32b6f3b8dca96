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
