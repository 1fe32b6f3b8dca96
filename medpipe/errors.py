"""The medpipe error hierarchy.

Every error derives from :class:`MedpipeError` and also from the builtin that
best describes it, so callers can catch either (``except ValueError`` keeps
working).  Per-file problems (:class:`SourceError` and its subclasses) are
quarantined by ingest; configuration and environment problems fail fast.
"""

from __future__ import annotations

__all__ = [
    "MedpipeError",
    "SourceError",
    "InvalidSourceError",
    "UnsupportedSourceError",
    "SeriesGeometryError",
    "SourceTooLargeError",
    "ConfigError",
    "StoreError",
    "SeriesNotFoundError",
    "StoreLockedError",
    "ModelError",
    "ModelMismatchError",
    "UntrustedModelError",
]


class MedpipeError(Exception):
    """Base class of every error medpipe raises on purpose."""


class SourceError(MedpipeError, ValueError):
    """A source file (or a series of them) cannot be turned into an image.

    Ingest quarantines the files involved, records ``str(error)`` as the reason
    and carries on with the rest of the archive.
    """

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class InvalidSourceError(SourceError):
    """The file is unreadable, corrupt, truncated or not an image at all."""


class UnsupportedSourceError(SourceError):
    """The file is valid but holds something medpipe does not ingest (e.g. an SR)."""


class SeriesGeometryError(SourceError):
    """A series has mixed orientation, missing slices or uneven spacing above tolerance."""


class SourceTooLargeError(SourceError, MemoryError):
    """A header declares an image so large that decoding it would need absurd memory."""


class ConfigError(MedpipeError, ValueError):
    """The configuration or environment is wrong; the message says what to change."""


class ArchiveError(MedpipeError, OSError):
    """The archive cannot be listed or an entry cannot be retrieved (a server down)."""


class StoreError(MedpipeError, OSError):
    """The store cannot be read or written."""


class SeriesNotFoundError(StoreError, FileNotFoundError):
    """No such series (or group) in the store."""


class StoreLockedError(StoreError):
    """Another run holds the store's write lock."""


class ModelError(MedpipeError, ValueError):
    """A model cannot be trained, saved or loaded."""


class ModelMismatchError(ModelError):
    """A model's feature configuration does not match the features it is asked to score."""


class UntrustedModelError(ModelError):
    """A saved model contains types that are not on the trusted list; it is not loaded."""
