"""Configuration: the pseudonymisation secret and run settings.

This is the one module that reads the environment.  Stages receive what they
need as explicit keyword arguments.
"""

from __future__ import annotations

import logging
import os

from medpipe.errors import ConfigError

__all__ = ["SECRET_ENV", "DEMO_SECRET", "resolve_secret"]

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
