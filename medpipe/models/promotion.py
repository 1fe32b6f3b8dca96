"""Which model version is current, and when a new one may replace it.

The rules live in :mod:`medpipe.models.lifecycle`; this module keeps their historical
import path.
"""

from __future__ import annotations

from medpipe.models.lifecycle import current_version, labels_changed, promote, unscored_count

__all__ = ["current_version", "promote", "labels_changed", "unscored_count"]
