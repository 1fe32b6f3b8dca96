"""The fitted-family contract: feature families whose features are learnt in the model.

Most families compute a sample's features from that sample alone, so their values are
constants of the feature table.  A *fitted* family (``sift`` and ``orb``, whose
bag-of-visual-words histograms need a vocabulary learnt from many images; a CNN
embedder) cannot: its state must come from the **training rows only**, or
cross-validation leaks.  So such a family splits in two:

1. at feature time it writes an *unfitted*, fixed-size representation of each sample
   into the table (for keypoints: the descriptors themselves, see
   :mod:`medpipe.features.keypoints`);
2. at model time its :attr:`~medpipe.features.registry.Family.fitted` hook gives a
   scikit-learn transformer that is the first step of every model pipeline
   (:func:`medpipe.models.estimators.make_pipeline`), so grid search and every CV fold
   refit it on their own training rows, and the saved model file holds its state.

The transformer contract (``tests/features/test_fitted_family.py`` checks it for every
registered fitted family):

* it is a scikit-learn estimator: every ``__init__`` argument is a parameter stored
  unchanged (``clone`` works), fitted state lives in attributes ending in ``_``,
  ``fit(X, y=None)`` returns ``self``, and ``transform`` before ``fit`` raises
  :class:`sklearn.exceptions.NotFittedError`;
* ``X`` is the whole feature matrix (columns in the order of the names it was built
  for); ``transform`` returns the other columns unchanged, in order, followed by the
  family's fitted features: exactly :attr:`FittedStep.feature_names_out`;
* its type is on the skops trusted list (:data:`medpipe.models.registry.TRUSTED_TYPES`),
  and its fitted state is made of NumPy arrays and plain numbers, so a saved model
  loads without running code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medpipe.features import registry

__all__ = ["FittedStep", "fitted_families", "fitted_steps", "fitted_feature_names"]


@dataclass(frozen=True)
class FittedStep:
    """One model-pipeline step of a fitted family.

    Parameters
    ----------
    name
        The pipeline step name (``bovw_sift`` …).
    transformer
        The unfitted scikit-learn transformer (see the module's contract).
    feature_names_out
        The names of its output columns, in order: the input names it does not consume,
        then its own features.
    """

    name: str
    transformer: Any
    feature_names_out: tuple[str, ...]


def fitted_families() -> tuple[registry.Family, ...]:
    """The registered families that have a :attr:`~registry.Family.fitted` hook, by name."""
    return tuple(f for f in registry.families() if f.fitted is not None)


def _steps(feature_names: Sequence[str], random_state: int) -> list[FittedStep]:
    names = tuple(str(n) for n in feature_names)
    out: list[FittedStep] = []
    for family in fitted_families():
        assert family.fitted is not None
        step = family.fitted(names, random_state)
        if step is None:
            continue
        out.append(step)
        names = tuple(step.feature_names_out)  # the next step sees this step's output
    return out


def fitted_steps(
    feature_names: Sequence[str], *, random_state: int = 0
) -> list[tuple[str, Any]]:
    """The ``(name, transformer)`` pipeline steps of the fitted families in a table.

    Parameters
    ----------
    feature_names
        The columns of the model's input matrix, in order (the training table's
        feature names).
    random_state
        Seed of the transformers' stochastic parts (k-means initialisation).

    Returns
    -------
    list of (str, transformer)
        One step per fitted family whose columns are there, chained: each step's
        column indices refer to the previous step's output.  Empty when the table
        holds no fitted family.

    Raises
    ------
    ModelError
        A fitted family's columns are incomplete (some were dropped).
    """
    return [(s.name, s.transformer) for s in _steps(feature_names, random_state)]


def fitted_feature_names(feature_names: Sequence[str]) -> list[str]:
    """The column names after every fitted step (what the classifier sees)."""
    steps = _steps(feature_names, 0)
    return list(steps[-1].feature_names_out) if steps else [str(n) for n in feature_names]
