"""Archive sources: where the archive lives (a folder, an fsspec URL, a DICOMweb server).

``medpipe ingest ARCHIVE`` (and ``nightly``, the flows' ``archive`` parameter) takes

- a local folder, as always;
- any fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``file://…``): :mod:`.fsspec_source`;
- ``dicomweb+http(s)://host/…/dicom-web``: a DICOMweb server, :mod:`.dicomweb`.

:func:`open_source` picks the source by URL scheme from a small registry
(:func:`register_source`); :func:`medpipe.catalog.scan` lists any of them, and ingest
copies the entries it reads into a temporary local folder (:func:`staged`).
"""

from __future__ import annotations

from medpipe.sources.base import (
    DEFAULT_CONCURRENCY,
    Listing,
    Source,
    Staging,
    is_url,
    open_source,
    register_source,
    scheme_of,
    source_schemes,
    staged,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Listing",
    "Source",
    "Staging",
    "is_url",
    "open_source",
    "register_source",
    "scheme_of",
    "source_schemes",
    "staged",
]
