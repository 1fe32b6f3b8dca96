"""The OME-Zarr store: series as NGFF 0.5 multiscale images on Zarr v3, and tables.

Modules:

* :mod:`~medpipe.store.layout` — every group name of the store and its path helpers;
* :mod:`~medpipe.store.fs` — fsspec plumbing, :func:`store_root`, ``zarr.json`` I/O,
  listings (:func:`read_attrs`, :func:`exists`, :func:`subgroups`, :func:`list_groups`);
* :mod:`~medpipe.store.ngff` — the pure NGFF 0.5 metadata encoder/decoder;
* :mod:`~medpipe.store.pyramid` — chunking (:func:`default_chunks`) and levels;
* :mod:`~medpipe.store.atomic` — :func:`atomic_group`, :func:`atomic_write`,
  :func:`remove`, :func:`clean_temporaries`;
* :mod:`~medpipe.store.lock` — :func:`store_lock`;
* :mod:`~medpipe.store.images` — :func:`write_image`, :func:`open_image`,
  :func:`open_labels`, :func:`image_version`;
* :mod:`~medpipe.store.tables` — :func:`open_table`, :func:`write_table`,
  :func:`append_samples`, :func:`drop_samples`.
"""

from medpipe.store import layout
from medpipe.store.atomic import atomic_group, atomic_write, clean_temporaries, remove
from medpipe.store.fs import exists, list_groups, read_attrs, store_root, subgroups
from medpipe.store.images import image_version, open_image, open_labels, write_image
from medpipe.store.lock import WRITE_LOCK, store_lock
from medpipe.store.ngff import NGFF_VERSION, ImageGeometry
from medpipe.store.pyramid import default_chunks
from medpipe.store.tables import (
    append_samples,
    drop_samples,
    has_table,
    open_table,
    write_table,
)

__all__ = [
    "write_image",
    "open_image",
    "open_labels",
    "read_attrs",
    "list_groups",
    "subgroups",
    "exists",
    "remove",
    "store_root",
    "clean_temporaries",
    "atomic_group",
    "store_lock",
    "WRITE_LOCK",
    "default_chunks",
    "NGFF_VERSION",
    "ImageGeometry",
    "atomic_write",
    "image_version",
    "layout",
    "has_table",
    "open_table",
    "write_table",
    "append_samples",
    "drop_samples",
]
