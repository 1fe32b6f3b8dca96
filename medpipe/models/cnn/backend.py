"""Keras 3 on JAX: the one place medpipe imports keras.

medpipe's CNN is written against Keras 3's backend-neutral API and installs JAX (CPU) as
its backend: no 3 GB CUDA torch wheel, and ``.keras`` files loaded with
``safe_mode=True``.  Before the first ``import keras`` of a process, :func:`keras`

* sets ``KERAS_BACKEND=jax`` **only if it is unset** (a user who chose another installed
  backend keeps it);
* on a Dask worker with one thread (medpipe's local workers), pins XLA's CPU thread pool
  to one thread (``XLA_FLAGS``: ``--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1``, appended to flags already set), so that grid-search
  candidates training side by side, one per worker, do not oversubscribe the cores.

Both only take effect before JAX initialises in that process (variables set later are
ignored by XLA), which is why nothing else in medpipe imports keras or jax directly.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

__all__ = ["BACKEND", "XLA_SINGLE_THREAD", "keras", "worker_threads"]

log = logging.getLogger(__name__)

#: The backend medpipe installs and sets when ``KERAS_BACKEND`` is unset.
BACKEND = "jax"
#: XLA flags that pin its CPU client to one thread.
XLA_SINGLE_THREAD = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def worker_threads() -> int | None:
    """Threads of the Dask worker this code runs on (``None`` outside a worker)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _pin_xla_threads() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    missing = [f for f in XLA_SINGLE_THREAD if f.split("=")[0] not in flags]
    if missing:
        os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()


def keras() -> ModuleType:
    """The ``keras`` module, imported with medpipe's backend and thread settings.

    Returns
    -------
    module
        ``keras`` (3.x).
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", BACKEND)
        if "jax" not in sys.modules and worker_threads() == 1:
            _pin_xla_threads()
    import keras as _keras

    return _keras
