"""The ``cnn`` estimator: a small residual 2-D CNN on Keras 3 / JAX (issue 12).

Design: the CNN is a scikit-learn classifier (:class:`CNNClassifier`) that consumes the
``pixels`` feature family (the image resampled to ``pixels_size x pixels_size``) and
reshapes those columns to images itself.  Grid search, patient-grouped (nested) CV,
scoring, evaluation and the nightly flow therefore work unchanged on the feature
matrix, and no image array beyond that matrix is built in the client.

* ``train --estimator cnn`` needs a feature table with the ``pixels`` family;
  ``--estimator all`` includes the CNN when the table has one (:func:`usable_kinds`).
  The CNN is not a member of the soft vote (its own candidate only).
* Which columns are pixels is known from the table's feature names while ``train``
  builds the pipelines (:func:`training_features`); the classifier keeps their indices
  (``columns``), so a saved model reads the same columns back.
* The pipeline skips the variance filter and per-feature scaling (the grid sets those
  steps to ``None``): the network standardises the whole image with one mean and
  variance of its training rows, so flips and shifts keep their meaning.
* Saved as ``model.keras`` + ``model.json`` (:mod:`medpipe.models.cnn.saving`), loaded
  with ``keras.saving.load_model(..., safe_mode=True)`` after a check of its layers.

Importing this package does not import Keras or JAX (:mod:`~medpipe.models.cnn.backend`
does, on first use).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np

from medpipe.errors import ModelError
from medpipe.models.cnn.classifier import RECIPES, CNNClassifier, RowGroups

__all__ = [
    "NAME",
    "RECIPES",
    "CNNClassifier",
    "classifier",
    "grid",
    "pixel_columns",
    "training_features",
    "usable_kinds",
]

log = logging.getLogger(__name__)

#: The estimator kind (``train --estimator cnn``).
NAME = "cnn"
_PIXEL = re.compile(r"^pixel_(\d+)_(\d+)$")
_FEATURES: ContextVar[tuple[tuple[str, ...], RowGroups | None] | None] = ContextVar(
    "medpipe_cnn_features", default=None)


def pixel_columns(feature_names: Sequence[str]) -> tuple[int, ...] | None:
    """Indices of the ``pixels`` family's columns, in row-major order.

    Parameters
    ----------
    feature_names
        The feature matrix's column names.

    Returns
    -------
    tuple of int or None
        ``None`` when the names hold no complete ``size x size`` pixel grid.
    """
    cells = {}
    for i, n in enumerate(feature_names):
        m = _PIXEL.match(str(n))
        if m:
            cells[(int(m[1]), int(m[2]))] = i
    size = math.isqrt(len(cells))
    if size < 4 or set(cells) != {(r, c) for r in range(size) for c in range(size)}:
        return None
    return tuple(cells[(r, c)] for r in range(size) for c in range(size))


@contextlib.contextmanager
def training_features(feature_names: Sequence[str], *, x: np.ndarray | None = None,
                      groups: np.ndarray | None = None) -> Iterator[None]:
    """While ``train`` builds pipelines: what the CNNs it builds need of the table.

    Parameters
    ----------
    feature_names
        The training matrix's columns (the CNN keeps the indices of the pixel ones).
    x, groups
        The training rows and their patient keys: the CNN's early-stopping split keeps
        each patient on one side (:class:`~medpipe.models.cnn.classifier.RowGroups`).
    """
    rows = RowGroups(x, groups) if x is not None and groups is not None else None
    token = _FEATURES.set((tuple(str(n) for n in feature_names), rows))
    try:
        yield
    finally:
        _FEATURES.reset(token)


def usable_kinds(kinds: Sequence[str], feature_names: Sequence[str], *,
                 explicit: bool, n_samples: int | None = None) -> list[str]:
    """``kinds`` without the CNN where it cannot (or should not) train.

    The CNN needs the ``pixels`` family, and only ``--estimator cnn`` trains it:
    ``--estimator all`` leaves it out, since its recipe inside ``all``'s grid searches
    and nested CV takes far longer on 2 cores than the whole of ``make demo`` should
    (issue 15 sets that budget).  ``n_samples`` is accepted for the callers' logging.

    Raises
    ------
    ModelError
        The CNN was asked for explicitly (``--estimator cnn``) and there are no pixels.
    """
    if NAME not in kinds:
        return list(kinds)
    if pixel_columns(feature_names) is not None:
        if explicit:
            return list(kinds)
        log.info("cnn left out of --estimator all (%s training images): train it with "
                 "--estimator cnn", n_samples)
        return [k for k in kinds if k != NAME]
    if explicit:
        raise ModelError(
            "the cnn estimator trains on the 'pixels' feature family, which this feature "
            "table lacks (or has with missing values): add 'pixels' to the feature "
            "config's families and run medpipe features"
        )
    log.info("cnn left out: the feature table has no 'pixels' family")
    return [k for k in kinds if k != NAME]


def classifier(*, large: bool, random_state: int) -> CNNClassifier:
    """The registry's factory: a CNN reading the pixel columns of the current table."""
    names, rows = _FEATURES.get() or (None, None)
    columns = pixel_columns(names) if names is not None else None
    return CNNClassifier(columns=columns, random_state=random_state, row_groups=rows)


def grid(*, large: bool) -> dict[str, list]:
    """The CNN's search grid: the two training recipes, chosen by CV (issue 12's probes
    showed the recipe matters most); the pipeline's variance filter and per-feature
    scaling are off (``None``).  Both candidates share one network, so each worker
    compiles it once."""
    return {"variance": [None], "scale": [None], "clf__recipe": list(RECIPES)}
