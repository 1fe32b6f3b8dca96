"""De-identification: pseudonymous keys and the PS3.15 Basic Profile for kept headers."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["pseudonym", "KEY_LENGTH"]

#: Hex characters kept from the HMAC-SHA256 digest (96 bits).
KEY_LENGTH = 24


def pseudonym(value: str, *, secret: bytes, kind: str) -> str:
    """Keyed hash of an identifier (a UID, a patient ID or a source path).

    Parameters
    ----------
    value
        The identifier.  It never leaves this function.
    secret
        The deployment's secret (see :func:`medpipe.config.resolve_secret`).
    kind
        A namespace such as ``"series"``, ``"study"`` or ``"patient"``, so equal values
        of different kinds get different keys.

    Returns
    -------
    str
        ``KEY_LENGTH`` lowercase hex characters.
    """
    digest = hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:KEY_LENGTH]
