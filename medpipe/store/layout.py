"""Every group name of the store, and the helpers that build them.

::

    STORE/
      images/<series>/                     ingested OME-Zarr images
        labels/<roi>/                      their masks
      preprocessed/<cfg-hash>/<series>/    one group per preprocessing config
      features/<cfg-hash>[-<pre-hash>]/    feature tables
      models/<name>/<version>/             the model registry
      scores/<name>/<version>/             score tables
      labels/<hash>.parquet                pseudonymised label tables
      catalog/part-*.parquet               the catalog
      outputs/part-*.parquet               the outputs index (and its snapshot-*.parquet)
      reports/<run-id>/index.html          QA reports
      locks/<name>.lock                    write locks

Nothing else in medpipe spells these names; it calls the helpers below.  The helpers
only build paths (no I/O) and are relative to the store root.
"""

from __future__ import annotations

import posixpath

__all__ = [
    "IMAGES",
    "PREPROCESSED",
    "FEATURES",
    "MODELS",
    "SCORES",
    "LABELS",
    "CATALOG",
    "OUTPUTS",
    "REPORTS",
    "LOCKS",
    "IMAGE_LABELS",
    "image",
    "image_labels",
    "image_label",
    "preprocessed",
    "preprocessed_image",
    "preprocessing_hash",
    "source_image",
    "features",
    "model",
    "scores",
    "label_table",
    "catalog_part",
    "report",
    "report_page",
    "lock",
    "key_of",
]

#: Ingested images: ``images/<series>``.
IMAGES = "images"
#: Preprocessed images: ``preprocessed/<cfg-hash>/<series>``.
PREPROCESSED = "preprocessed"
#: Feature tables: ``features/<cfg-hash>[-<pre-hash>]``.
FEATURES = "features"
#: The model registry: ``models/<name>/<version>``.
MODELS = "models"
#: Score tables: ``scores/<name>/<version>``.
SCORES = "scores"
#: Pseudonymised label tables: ``labels/<hash>.parquet``.
LABELS = "labels"
#: The catalog's Parquet parts: ``catalog/part-*.parquet``.
CATALOG = "catalog"
#: The outputs index's Parquet parts and snapshots: ``outputs/{part,snapshot}-*.parquet``.
OUTPUTS = "outputs"
#: QA reports: ``reports/<run-id>/index.html``.
REPORTS = "reports"
#: Write locks: ``locks/<name>.lock``.
LOCKS = "locks"
#: Sub-group of an image holding its masks: ``<image>/labels/<roi>``.
IMAGE_LABELS = "labels"


def _join(*parts: str) -> str:
    return posixpath.join(*(p.strip("/") for p in parts if p.strip("/")))


def image(key: str) -> str:
    """``images/<key>``: an ingested series."""
    return _join(IMAGES, key)


def image_labels(image_path: str) -> str:
    """``<image_path>/labels``: the NGFF labels group of an image."""
    return _join(image_path, IMAGE_LABELS)


def image_label(image_path: str, roi: str) -> str:
    """``<image_path>/labels/<roi>``: one mask of an image."""
    return _join(image_path, IMAGE_LABELS, roi)


def preprocessed(config_hash: str) -> str:
    """``preprocessed/<config_hash>``: the images preprocessed with one config."""
    return _join(PREPROCESSED, config_hash)


def preprocessed_image(config_hash: str, key: str) -> str:
    """``preprocessed/<config_hash>/<key>``: one preprocessed series."""
    return _join(PREPROCESSED, config_hash, key)


def source_image(source: str, key: str) -> str:
    """``<source>/<key>``: series ``key`` of a source (``images`` or ``preprocessed/<h>``)."""
    return _join(source, key)


def preprocessing_hash(source: str) -> str | None:
    """The config hash of a ``preprocessed/<hash>`` source; ``None`` for ``images``."""
    parts = source.strip("/").split("/")
    return parts[1] if len(parts) == 2 and parts[0] == PREPROCESSED else None


def features(config_hash: str, *, source: str = IMAGES) -> str:
    """``features/<config_hash>[-<pre-hash>]``: the feature table of a config and source.

    Tables from raw images live at ``features/<cfg-hash>``; from a preprocessed group
    ``preprocessed/<p>`` at ``features/<cfg-hash>-<p>`` so they never overwrite each other.
    """
    suffix = "" if source == IMAGES else "-" + source.rstrip("/").rsplit("/", 1)[-1]
    return _join(FEATURES, f"{config_hash}{suffix}")


def model(name: str, version: str = "") -> str:
    """``models/<name>/<version>`` (``models/<name>`` without a version)."""
    return _join(MODELS, name, version)


def scores(name: str, version: str) -> str:
    """``scores/<name>/<version>``: the score table of one model version."""
    return _join(SCORES, name, version)


def label_table(digest: str) -> str:
    """``labels/<digest>.parquet``: a pseudonymised label table."""
    return _join(LABELS, f"{digest}.parquet")


def catalog_part(name: str) -> str:
    """``catalog/<name>``: one Parquet part of the catalog."""
    return _join(CATALOG, name)


def listing(run_id: str) -> str:
    """``catalog/listing-<run_id>.parquet``: a run's archive listing, handed to ingest."""
    return _join(CATALOG, f"listing-{run_id}.parquet")


def report(run_id: str) -> str:
    """``reports/<run_id>``: the folder of one run's QA report."""
    return _join(REPORTS, run_id)


def report_page(run_id: str) -> str:
    """``reports/<run_id>/index.html``: one run's QA report page."""
    return _join(REPORTS, run_id, "index.html")


def lock(name: str) -> str:
    """``locks/<name>.lock``: a write lock."""
    return _join(LOCKS, f"{name}.lock")


def key_of(path: str) -> str:
    """The last component of a group path (the series key of ``images/<key>``)."""
    return path.rstrip("/").rsplit("/", 1)[-1]
