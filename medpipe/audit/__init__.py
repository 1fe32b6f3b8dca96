"""The PHI audit: does any identifying value of the archive appear in what medpipe wrote?

``medpipe audit STORE --archive ARCHIVE`` proves the store holds no patient identifier:

1. :func:`collect_values` reads every DICOM header of the archive (pixels are not read)
   and keeps its identifying values (:func:`medpipe.audit.values.identifying_values`: person
   names, dates, instance UIDs, IDs, accession numbers, institutions, descriptions),
   plus every archive path and its components (folder names often carry a name or a
   medical record number, ``SMITH_JOHN_12345/…``).
2. :func:`scan_store` reads every file medpipe wrote, decoded: Zarr attributes
   (``zarr.json``), string arrays (decoded by zarr, compressed chunks included), Parquet
   tables, CSV/JSON/HTML/Markdown text, the members of zip files (skops models, npz),
   the text chunks of PNG figures and the printable strings of anything else.  Numeric
   arrays (pixels, feature values, scores) hold no text and are not matched: a number
   equal to an ID is chance.  The catalog (``catalog/part-*.parquet``) is the one place
   allowed to hold archive paths (operators need them to find a file); it is listed as
   such and not scanned.
3. :func:`audit_store` matches every text against every value (plus texts the caller
   passes, such as Prefect's flow logs and artifacts: this module does not import
   Prefect) and returns the hits with where each was found.

How values are matched
----------------------
Text and values are split into words (runs of letters and digits; a decimal number such
as ``0.12345`` or a UID is one word) and compared case-insensitively, so ``SMITH^JOHN``
is found as ``John Smith``, ``smith_john`` or ``SMITH, JOHN``.  A value is searched in
several spellings: a person name as a whole and each of its parts, a date as
``YYYYMMDD``, ``YYYY-MM-DD`` (any separator) and ``DD.MM.YYYY``, an institution or an
address as a whole and each word, a path as a whole and each component and word.
To avoid false positives, a single word is searched only when it has at least
:data:`MIN_LETTERS` characters (with a letter) or :data:`MIN_DIGITS` digits, and is not
one of the :data:`COMMON_WORDS` (English words, medpipe's own vocabulary, imaging terms,
file extensions); a multi-word spelling is searched when one of its words would be (dates
and UIDs always are).  Times alone (``TM``) are not collected, and neither are the words
of the technical header values medpipe keeps (``Manufacturer``…: see :class:`Values`).

Limits: values come from DICOM headers and paths only (a NIfTI ``descrip`` or a PNG's
text chunk in the archive is not read); a value glued to other letters (``SMITHJOHN``)
is not found; Prefect's logs and artifacts are those of every flow run the API (or the
database) holds, not only this store's.
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medpipe.audit.scan import StoreScan, scan_store
from medpipe.audit.values import COMMON_WORDS, identifying_values
from medpipe.deid import basic_profile_filter

__all__ = [
    "MIN_LETTERS",
    "MIN_DIGITS",
    "COMMON_WORDS",
    "Value",
    "Values",
    "Hit",
    "AuditResult",
    "words",
    "collect_values",
    "StoreScan",
    "scan_store",
    "audit_texts",
    "audit_store",
]

#: A word with a letter is searched on its own from this many characters.
MIN_LETTERS = 4
#: A number is searched on its own from this many digits.
MIN_DIGITS = 5

_WORD = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
#: Attributes whose words are searched one by one too (not only the whole value).
_SPLIT = frozenset(
    {"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress",
     "StationName", "Occupation", "PatientInstitutionResidence", "CurrentPatientLocation"}
)  # fmt: skip


def words(text: str) -> list[str]:
    """The case-folded words of ``text`` (a decimal number or a UID is one word)."""
    return [w.casefold() for w in _WORD.findall(text)]


def _significant(word: str) -> bool:
    digits = sum(c.isdigit() for c in word)
    if digits == len(word.replace(".", "")):
        return digits >= MIN_DIGITS
    return len(word) >= MIN_LETTERS and word not in COMMON_WORDS


@dataclass(frozen=True)
class Value:
    """One identifying value in one spelling.

    Attributes
    ----------
    words
        The spelling as case-folded words (what is matched).
    text
        The value as it was found (printed to the operator, never stored).
    source
        Where it comes from: a DICOM keyword (``PatientName``) or ``path``.
    """

    words: tuple[str, ...]
    text: str
    source: str


@dataclass
class Values:
    """The identifying values of an archive, indexed for matching.

    Attributes
    ----------
    spellings
        First word → the spellings that start with it.
    headers, paths
        DICOM headers read and archive paths seen.
    kept
        The words of the technical header values medpipe keeps (the Basic Profile's
        allow-list: ``Manufacturer``, model names…).  A spelling made of such words only
        is not searched: e.g. an ``InstitutionName`` of ``GE MEDICAL SYSTEMS`` that is
        also the ``Manufacturer``.
    """

    spellings: dict[str, list[Value]] = field(default_factory=dict)
    headers: int = 0
    paths: int = 0
    kept: set[str] = field(default_factory=set)
    _seen: set[tuple[tuple[str, ...], str]] = field(default_factory=set, repr=False)
    #: first word → spelling length → words → values (built by ``find``, dropped on a change)
    _lookup: dict[str, dict[int, dict[tuple[str, ...], list[Value]]]] | None = field(
        default=None, repr=False
    )

    @property
    def count(self) -> int:
        """Distinct values searched, each spelling once (a name's parts, a date's forms)."""
        return len({v.words for vs in self.spellings.values() for v in vs})

    def add(self, text: str, source: str, *, split: bool = False, force: bool = False) -> None:
        """Add a value: as a whole, and word by word when ``split``."""
        ws = tuple(words(text))
        if not ws:
            return
        candidates = [ws]
        if split and len(ws) > 1:
            candidates += [(w,) for w in ws]
        for c in candidates:
            if not (force and c is ws) and not any(_significant(w) for w in c):
                continue
            if (c, source) not in self._seen:
                self._seen.add((c, source))
                shown = text if c is ws else f"{c[0]} (in {text})"
                self.spellings.setdefault(c[0], []).append(Value(c, shown, source))
                self._lookup = None

    def keep_technical(self, header: dict[str, Any]) -> None:
        """Note the words of a header's kept technical values (see ``kept``)."""
        for v in header.values():
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, str):
                    self.kept.update(words(item))

    def drop_technical(self) -> None:
        """Drop the spellings whose significant words are all kept technical words."""
        self._lookup = None
        for first in list(self.spellings):
            left = []
            for v in self.spellings[first]:
                sig = [w for w in v.words if _significant(w)]
                if not (sig and all(w in self.kept for w in sig)):
                    left.append(v)
            if left:
                self.spellings[first] = left
            else:
                del self.spellings[first]

    def add_dicom(self, keyword: str, vr: str, value: str) -> None:
        """Add a header value in its spellings (names by part, dates in three forms)."""
        if vr == "PN":
            for group in value.split("="):  # alphabetic, ideographic, phonetic
                self.add(group.replace("^", " "), keyword, split=True)
            return
        if vr in ("DA", "DT") and (m := _DATE.match(value.strip())):
            y, mo, d = m.groups()
            self.add(f"{y}{mo}{d}", keyword, force=True)
            self.add(f"{y}-{mo}-{d}", keyword, force=True)
            self.add(f"{d}.{mo}.{y}", keyword, force=True)
            if len(value.strip()) > 8:
                self.add(value.strip(), keyword)
            return
        self.add(value, keyword, split=keyword in _SPLIT)

    def add_path(self, rel: str) -> None:
        """Add an archive-relative path, each of its components and their words."""
        self.paths += 1
        self.add(rel, "path")
        for part in rel.split("/"):
            self.add(part, "path", split=True)

    def find(self, tokens: Sequence[str]) -> list[Value]:
        """The spellings that occur in a word sequence."""
        if self._lookup is None:  # one dict probe per spelling length, not per spelling
            self._lookup = {}
            for first, vs in self.spellings.items():
                by_len = self._lookup.setdefault(first, {})
                for v in vs:
                    by_len.setdefault(len(v.words), {}).setdefault(v.words, []).append(v)
        found: dict[tuple[tuple[str, ...], str], Value] = {}
        for i, w in enumerate(tokens):
            for n, by_words in self._lookup.get(w, {}).items():
                for v in by_words.get(tuple(tokens[i : i + n]), ()):
                    found.setdefault((v.words, v.source), v)
        return list(found.values())


def collect_values(
    archive: str | Path,
    *,
    files: Sequence[Any] | None = None,
    advance: Callable[[int], None] | None = None,
) -> Values:
    """The identifying values of every DICOM header and every path of an archive.

    Parameters
    ----------
    archive
        The archive root (a local folder).
    files
        Its files (:func:`medpipe.catalog.scan`; default: scanned here).
    advance
        Called with 1 after each file (a progress bar's ``advance``).

    Returns
    -------
    Values

    Raises
    ------
    ConfigError
        The archive is not a folder.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from medpipe.catalog import scan
    from medpipe.errors import ConfigError
    from medpipe.sources import is_url

    if is_url(str(archive)):  # the URL is not repeated: it would land in the QA report
        raise ConfigError(
            "the PHI audit reads a local archive folder, and this archive is a URL: audit "
            "against a local copy of it (medpipe audit STORE --archive FOLDER)"
        )
    root = Path(archive)
    out = Values()
    for f in scan(root) if files is None else files:
        if advance is not None:
            advance(1)
        out.add_path(f.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd headers are the archive's, not ours
            try:
                ds = pydicom.dcmread(root / f.path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError,
                    AttributeError, IndexError, struct.error):
                continue
            out.headers += 1
            out.keep_technical(basic_profile_filter(ds))
            for keyword, vr, value in identifying_values(ds):
                out.add_dicom(keyword, vr, value)
    out.drop_technical()
    return out


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Hit:
    """An identifying value found where medpipe wrote something.

    Attributes
    ----------
    location
        The store file (and the array, column or member in it), or the external text
        (e.g. a Prefect log).
    value
        The value as it is in the archive (print it to the terminal only).
    source
        Its DICOM keyword, or ``path``.
    """

    location: str
    value: str
    source: str


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit_store` found.

    Attributes
    ----------
    values
        Distinct identifying values searched (each spelling once: :attr:`Values.count`).
    files
        Store files scanned (every file outside the catalog).
    texts
        External texts scanned (Prefect logs and artifacts).
    allowed
        Store files not scanned because they may hold archive paths (the catalog).
    hits
        Every value found, with where.
    headers, paths
        DICOM headers and archive paths the values come from.
    """

    values: int
    files: int
    texts: int = 0
    allowed: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()
    headers: int = 0
    paths: int = 0

    @property
    def clean(self) -> bool:
        """No hit."""
        return not self.hits

    def summary_line(self) -> str:
        """``PHI audit: 0 hits over N values in M files`` (the QA report's line)."""
        n = len(self.hits)
        line = (
            f"PHI audit: {n} hit{'s' if n != 1 else ''} over {self.values} values "
            f"in {self.files} files"
        )
        if self.texts:
            line += f" and {self.texts} Prefect logs and artifacts"
        return line

    def record(self) -> dict[str, Any]:
        """The counts and hit locations, without the values (safe to store or log)."""
        return {
            "line": self.summary_line(),
            "hits": len(self.hits),
            "values": self.values,
            "files": self.files,
            "texts": self.texts,
            "not_scanned": list(self.allowed),
            "locations": sorted({h.location for h in self.hits}),
        }


# --------------------------------------------------------------------------- the audit


def audit_texts(values: Values, texts: Iterable[tuple[str, str]]) -> list[Hit]:
    """Every value found in ``(location, text)`` pairs."""
    hits = []
    for location, text in texts:
        for v in values.find(words(text)):
            hits.append(Hit(location=location, value=v.text, source=v.source))
    return hits


def audit_store(
    store: str,
    archive: str | Path,
    *,
    texts: Iterable[tuple[str, str]] = (),
    values: Values | None = None,
) -> AuditResult:
    """Search everything medpipe wrote for the archive's identifying values.

    Parameters
    ----------
    store
        Store path or fsspec URL.
    archive
        The archive the store was ingested from.
    texts
        More ``(location, text)`` pairs to search: Prefect flow logs and artifacts
        (``medpipe audit`` reads them from Prefect's API or database).
    values
        The values (default :func:`collect_values` of ``archive``).

    Returns
    -------
    AuditResult
        Hits sorted by location; the catalog is reported as not scanned.
    """
    values = values or collect_values(archive)
    scan = scan_store(store)
    extra = list(texts)
    hits = audit_texts(values, scan.texts) + audit_texts(values, extra)
    return AuditResult(
        values=values.count,
        files=scan.files,
        texts=len(extra),
        allowed=tuple(scan.allowed),
        hits=tuple(sorted(set(hits), key=lambda h: (h.location, h.source, h.value))),
        headers=values.headers,
        paths=values.paths,
    )
