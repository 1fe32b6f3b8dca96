"""A DICOMweb server as an archive: ``dicomweb+http(s)://host/…/dicom-web``.

Listing (QIDO-RS, metadata only): one ``/studies`` query, then one
``/studies/{study}/instances`` query per study.  Each instance becomes a catalog entry
keyed ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (unique by its
SOPInstanceUID) whose ``meta`` is the SHA-256 of the instance's QIDO attributes: a
server cannot be ``stat``\\ ed, so an instance is re-retrieved only when its listed
metadata change.  A night without changes lists metadata and retrieves no pixel data.

Retrieval (WADO-RS): one request per series (``/studies/{s}/series/{r}``), with retries
and exponential back-off, at most ``concurrency`` series at a time.

Listing cost.  A full listing costs ``1 + #studies`` QIDO requests each night, which
grows with the whole archive.  The URL's query options bound it::

    dicomweb+https://pacs/dicom-web?window_days=3&full_weekday=6

``window_days=N`` lists only studies whose StudyDate is within the last ``N`` days
(``1 + #recent studies`` requests); ``full_weekday=D`` (0 = Monday … 6 = Sunday) does
the full reconciliation on that weekday.  The trade-off: between two full listings an
instance added to an older study (a late import, a prior from another site, a study
without StudyDate) or deleted from one is not seen; the weekly full listing finds it.
Pick ``window_days`` larger than the longest delay between acquisition and archiving.

Credentials: ``$MEDPIPE_DICOMWEB_TOKEN`` (bearer) or ``$MEDPIPE_DICOMWEB_USER`` and
``$MEDPIPE_DICOMWEB_PASSWORD`` (basic), read by :func:`medpipe.config.dicomweb_auth`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from medpipe.catalog import FileStat
from medpipe.config import dicomweb_auth
from medpipe.errors import ArchiveError, ConfigError
from medpipe.sources.base import DEFAULT_CONCURRENCY, Listing, register_source

__all__ = [
    "DicomwebSource",
    "listing_since",
    "instance_entry",
    "metadata_hash",
    "with_retries",
]

log = logging.getLogger(__name__)

_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_SOP_UID = "00080018"
#: Attributes left out of the metadata hash: they name the server, not the instance.
_NOT_HASHED = frozenset({"00081190", "00080054", "00081198", "00081199"})
_OPTIONS = ("window_days", "full_weekday", "retries", "backoff_s")
#: Retrieve instances in the transfer syntax they are stored in (no transcoding: the
#: server sends what it holds, as a folder of the same files would).
_AS_STORED = (("application/dicom", "*"),)


def listing_since(
    today: date, *, window_days: int | None, full_weekday: int | None
) -> date | None:
    """The first StudyDate tonight's listing covers, or ``None`` for a full listing.

    Parameters
    ----------
    today
        The night's date.
    window_days
        List studies of the last ``window_days`` days (``None``: always list all).
    full_weekday
        On this weekday (0 = Monday) list everything: the periodic full reconciliation.

    Returns
    -------
    datetime.date or None
    """
    if window_days is None or (full_weekday is not None and today.weekday() == full_weekday):
        return None
    return today - timedelta(days=window_days)


def _value(record: Mapping[str, Any], tag: str) -> str | None:
    values = (record.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None


def metadata_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of an instance's QIDO-RS attributes (DICOM JSON), canonically encoded."""
    kept = {k: v for k, v in record.items() if k not in _NOT_HASHED}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def instance_entry(record: Mapping[str, Any], *, study: str | None = None) -> FileStat | None:
    """The catalog entry of one QIDO-RS instance record (``None`` without its UIDs)."""
    st = _value(record, _STUDY_UID) or study
    se, sop = _value(record, _SERIES_UID), _value(record, _SOP_UID)
    if not (st and se and sop):
        return None
    return FileStat(f"{st}/{se}/{sop}.dcm", 0, 0, metadata_hash(record))


def with_retries(
    call: Callable[[], Any], *, retries: int, backoff_s: float, what: str
) -> Any:
    """Run ``call``, retrying on network and server errors with exponential back-off.

    Parameters
    ----------
    call
        The request.
    retries
        Further attempts after the first.
    backoff_s
        Wait before the first retry; doubled before each next one.
    what
        What is requested, for the log.

    Returns
    -------
    object
        ``call()``'s result.
    """
    import requests

    for attempt in range(retries + 1):
        try:
            return call()
        except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                raise
            if attempt == retries:
                raise
            wait = backoff_s * 2**attempt
            log.warning("%s failed (%s); retrying in %.1f s", what, type(err).__name__, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class DicomwebSource:
    """A DICOMweb archive (QIDO-RS listing, WADO-RS retrieval by series)."""

    def __init__(self, url: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower().removeprefix("dicomweb+")
        if scheme not in ("http", "https"):
            raise ConfigError(f"archive: DICOMweb URLs are dicomweb+http(s)://, not {url!r}")
        opts = dict(parse_qsl(parts.query))
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"archive: unknown DICOMweb option(s) {', '.join(unknown)} "
                f"(known: {', '.join(_OPTIONS)})"
            )
        try:
            self.window_days = int(opts["window_days"]) if "window_days" in opts else None
            self.full_weekday = int(opts["full_weekday"]) if "full_weekday" in opts else None
            self.retries = int(opts.get("retries", 3))
            self.backoff_s = float(opts.get("backoff_s", 1.0))
        except ValueError as err:
            raise ConfigError(f"archive: a DICOMweb option is not a number: {err}") from err
        self.base_url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.concurrency = concurrency
        self.auth = dicomweb_auth()

    def client(self) -> Any:
        """A ``dicomweb_client.DICOMwebClient`` with the configured credentials."""
        from dicomweb_client import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        if self.auth.user:
            session = create_session_from_user_pass(self.auth.user, self.auth.password or "")
        else:
            session = create_session()
        headers = {"Authorization": f"Bearer {self.auth.token}"} if self.auth.token else None
        client = DICOMwebClient(self.base_url, session=session, headers=headers)
        client.set_http_retry_params(
            retry=True, max_attempts=self.retries + 1,
            wait_exponential_multiplier=int(self.backoff_s * 1000),
        )
        return client

    def list(self, *, limit: int | None = None, today: date | None = None) -> Listing:
        """The instances of tonight's studies (all, or the StudyDate window's).

        Raises
        ------
        ArchiveError
            The server cannot be reached or refuses the query (after retries); the
            message says why, without the server's address.
        """
        import requests

        try:
            return self._list(limit=limit, today=today)
        except requests.RequestException as err:
            raise ArchiveError(f"cannot list the DICOMweb archive: {_why(err)}") from err

    def _list(self, *, limit: int | None, today: date | None) -> Listing:
        client = self.client()
        since = listing_since(
            today or date.today(), window_days=self.window_days, full_weekday=self.full_weekday
        )
        filters = {"StudyDate": since.strftime("%Y%m%d") + "-"} if since else None
        studies = with_retries(
            lambda: client.search_for_studies(search_filters=filters, get_remaining=True),
            retries=self.retries, backoff_s=self.backoff_s, what="QIDO-RS study query",
        )
        uids = sorted({u for s in studies if (u := _value(s, _STUDY_UID))})

        def instances(study: str) -> list[FileStat]:
            found = with_retries(
                lambda: self.client().search_for_instances(
                    study_instance_uid=study, get_remaining=True
                ),
                retries=self.retries, backoff_s=self.backoff_s, what="QIDO-RS instance query",
            )
            return [e for r in found if (e := instance_entry(r, study=study)) is not None]

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            entries = sorted((e for part in pool.map(instances, uids) for e in part),
                             key=lambda f: f.path)
        log.info("DICOMweb listing: %d studies, %d instances%s", len(uids), len(entries),
                 "" if since is None else f" (StudyDate from {since.isoformat()})")
        out = Listing(entries[:limit] if limit is not None else entries)
        if since is not None:
            listed = set(uids)
            out.covers = lambda path: path.split("/", 1)[0] in listed
        return out

    def open(self, path: str) -> BinaryIO:
        """One instance's Part 10 bytes (a WADO-RS instance request)."""
        study, series, sop = _split(path)
        ds = self.client().retrieve_instance(study, series, sop, media_types=_AS_STORED)
        buf = io.BytesIO()
        ds.save_as(buf)
        buf.seek(0)
        return buf

    def fetch(
        self, paths: Sequence[str], dest: Path, *, advance: Callable[[int], None] | None = None
    ) -> set[str]:
        """Retrieve the series holding ``paths`` (one WADO-RS request per series)."""
        by_series: dict[tuple[str, str], set[str]] = defaultdict(set)
        for p in paths:
            study, series, sop = _split(p)
            by_series[(study, series)].add(sop)

        def one(item: tuple[tuple[str, str], set[str]]) -> set[str]:
            try:
                return retrieve(item)
            finally:
                if advance is not None:
                    advance(len(item[1]))

        def retrieve(item: tuple[tuple[str, str], set[str]]) -> set[str]:
            (study, series), sops = item
            try:
                datasets = with_retries(
                    lambda: self.client().retrieve_series(study, series, media_types=_AS_STORED),
                    retries=self.retries, backoff_s=self.backoff_s, what="WADO-RS series",
                )
            except Exception as err:  # noqa: BLE001 - this series fails, the run goes on
                log.warning("a series could not be retrieved: %s", _why(err))
                return {f"{study}/{series}/{s}.dcm" for s in sops}
            folder = dest / study / series
            folder.mkdir(parents=True, exist_ok=True)
            got = set()
            for ds in datasets:
                sop = str(getattr(ds, "SOPInstanceUID", ""))
                if sop in sops:
                    ds.save_as(folder / f"{sop}.dcm")
                    got.add(sop)
            return {f"{study}/{series}/{s}.dcm" for s in sops - got}

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return set().union(*pool.map(one, sorted(by_series.items())))


def _why(err: BaseException) -> str:
    """A one-line reason for a failed request, without its URL."""
    resp = getattr(err, "response", None)
    status = getattr(resp, "status_code", None)
    if status in (401, 403):
        return (
            f"HTTP {status} {getattr(resp, 'reason', '')}: set $MEDPIPE_DICOMWEB_TOKEN, or "
            "$MEDPIPE_DICOMWEB_USER and $MEDPIPE_DICOMWEB_PASSWORD, to credentials it accepts"
        )
    if status is not None:
        return f"HTTP {status} {getattr(resp, 'reason', '')}".strip()
    return f"{type(err).__name__} (server unreachable?)"


def _split(path: str) -> tuple[str, str, str]:
    parts = path.removesuffix(".dcm").split("/")
    if len(parts) != 3:
        raise ConfigError(f"not a DICOMweb catalog key: {path!r}")
    return parts[0], parts[1], parts[2]


register_source("dicomweb+http", DicomwebSource)
register_source("dicomweb+https", DicomwebSource)
