"""Archive credentials from Prefect Secret blocks, where the environment has none.

A DICOMweb archive's credentials are read by :func:`medpipe.config.dicomweb_auth` from
``$MEDPIPE_DICOMWEB_TOKEN`` or ``$MEDPIPE_DICOMWEB_USER`` / ``$MEDPIPE_DICOMWEB_PASSWORD``.
On a Prefect deployment they can live in Secret blocks instead (created in the UI, or
``Secret(value=...).save("medpipe-dicomweb-token")``): the flow process loads them
into its own environment before it lists the archive.  Never from parameters.
"""

from __future__ import annotations

import os

from medpipe.config import (
    DICOMWEB_PASSWORD_ENV,
    DICOMWEB_TOKEN_ENV,
    DICOMWEB_USER_ENV,
    dicomweb_auth,
)
from medpipe.sources import scheme_of

__all__ = ["DICOMWEB_BLOCKS", "load_archive_credentials"]

#: Environment variable -> the Prefect Secret block it is loaded from.
DICOMWEB_BLOCKS = {
    DICOMWEB_TOKEN_ENV: "medpipe-dicomweb-token",
    DICOMWEB_USER_ENV: "medpipe-dicomweb-user",
    DICOMWEB_PASSWORD_ENV: "medpipe-dicomweb-password",
}


def load_archive_credentials(archive: str) -> list[str]:
    """Load a DICOMweb archive's credentials from Secret blocks into this process.

    Parameters
    ----------
    archive
        The flow's archive; only ``dicomweb+http(s)://`` archives have credentials here.

    Returns
    -------
    list of str
        The variables set (none when the environment already holds credentials, the
        archive is not DICOMweb, or no block exists).
    """
    if scheme_of(archive) not in ("dicomweb+http", "dicomweb+https"):
        return []
    auth = dicomweb_auth()
    if auth.token or auth.user:
        return []
    from prefect.blocks.system import Secret

    loaded = []
    for var, block in DICOMWEB_BLOCKS.items():
        try:
            value = Secret.load(block).get()
        except Exception:  # noqa: BLE001 - no such block (or no API): the next one
            continue
        if value:
            os.environ[var] = str(value)
            loaded.append(var)
    return loaded
