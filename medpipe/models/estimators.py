"""Estimators, grouped cross-validation and the parallel hyperparameter search.

Every model is a scikit-learn :class:`~sklearn.pipeline.Pipeline`
``VarianceThreshold → dask_ml StandardScaler → classifier`` (the incremental SVM drops
the first step, so that its data stay Dask arrays):

* ``svm``: :class:`~sklearn.svm.LinearSVC` (probabilities by sigmoid calibration,
  :class:`~sklearn.calibration.CalibratedClassifierCV`) for data that fit in memory; for
  larger data ``dask_ml.wrappers.Incremental(SGDClassifier(loss="hinge"))`` trained
  block by block;
* ``logreg``: :class:`dask_ml.linear_model.LogisticRegression`;
* ``rf``: scikit-learn's :class:`~sklearn.ensemble.RandomForestClassifier`;
* ``ensemble`` (only with ``--estimator all``): :class:`SoftVote`, the mean probability of
  the three tuned pipelines, kept when its cross-validated AUC beats each of them.

A feature table holding a *fitted* family (``sift``, ``orb``:
:mod:`medpipe.features.fitted`) puts that family's step first (the bag of visual
words, whose vocabulary is learnt from each fit's own training rows): pass the table's
``feature_names`` to :func:`make_pipeline`, or build the pipelines inside
:func:`pipeline_features` (what ``train`` does).

This module holds the pipelines and the two medpipe types a saved model contains
(:class:`StandardScaler`, :class:`SoftVote`: the skops trusted list names them by this
module path).  The search, out-of-fold and final-fit helpers live in
:mod:`medpipe.models.search` and are importable from here too (``estimators.search`` …).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask_ml.linear_model import LogisticRegression
from dask_ml.preprocessing import StandardScaler as _DaskStandardScaler
from dask_ml.wrappers import Incremental
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import VarianceThreshold
from sklearn.linear_model import LogisticRegression as _KClassLogisticRegression
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from medpipe.errors import ConfigError
from medpipe.features.fitted import fitted_steps
from medpipe.models import cnn as _cnn
from medpipe.models import multiclass as _mc
from medpipe.models.probability import auc_scorer, positive_proba, proba_block
from medpipe.models.probability import fit_pipeline as _fit

__all__ = [  # noqa: F822 - the search helpers are served by __getattr__ below
    "ESTIMATORS",
    "Estimator",
    "register_estimator",
    "unregister_estimator",
    "get_estimator",
    "estimator_names",
    "ENSEMBLE",
    "LARGE_SAMPLES",
    "SearchResult",
    "SoftVote",
    "StandardScaler",
    "ensemble_result",
    "make_pipeline",
    "pipeline_features",
    "param_grid",
    "grouped_folds",
    "auc_scorer",
    "positive_proba",
    "search",
    "fit_final",
    "out_of_fold",
]

#: Names defined in :mod:`medpipe.models.search`, importable from this module as before.
_SEARCH_NAMES = frozenset(
    {"SearchResult", "ensemble_result", "grouped_folds", "search", "fit_final", "out_of_fold"}
)


def __getattr__(name: str) -> Any:
    # lazy re-export: medpipe.models.search imports this module, so not at import time
    if name in _SEARCH_NAMES:
        from medpipe.models import search as _search

        return getattr(_search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SEARCH_NAMES})


class StandardScaler(_DaskStandardScaler):
    """dask-ml's :class:`~dask_ml.preprocessing.StandardScaler`, NumPy input kept in NumPy.

    dask-ml 2025.1's scaler computes the statistics of a NumPy array through a Dask
    graph — a nested compute on the cluster when it runs inside a search task (seconds
    per fit, serialising a grid search) — and scales NumPy input *in place*.  Here NumPy
    input is fitted with NumPy (same attributes and values) and transformed on a copy;
    Dask arrays and data frames go to dask-ml unchanged.
    """

    def fit(self, X: Any, y: Any = None) -> StandardScaler:  # noqa: N803 - sklearn API
        if not isinstance(X, np.ndarray):
            return super().fit(X, y)
        self._reset()
        x = np.asarray(X, dtype=np.float64)
        if self.with_mean:
            self.mean_ = np.nanmean(x, axis=0)
        if self.with_std:
            var = np.nanvar(x, axis=0)
            scale = var.copy()
            scale[scale == 0] = 1
            self.var_ = var
            self.scale_ = np.sqrt(scale)
        self.n_samples_seen_ = x.shape[0]
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X: Any, y: Any = None, copy: bool | None = None) -> Any:  # noqa: N803
        if isinstance(X, np.ndarray):
            X = X.astype(np.float64, copy=True)  # noqa: N806
        return super().transform(X, y, copy)


#: Kind name of the soft vote of the tuned estimators.
ENSEMBLE = "ensemble"


class SoftVote(ClassifierMixin, BaseEstimator):
    """Mean class-1 probability of several binary pipelines (soft voting).

    scikit-learn's :class:`~sklearn.ensemble.VotingClassifier` refuses dask-ml's
    logistic regression (it carries no classifier tag); this is the same average.

    Parameters
    ----------
    estimators
        ``(name, pipeline)`` pairs; each is cloned and fitted on the same data.
    """

    def __init__(self, estimators: list[tuple[str, Any]]) -> None:
        self.estimators = estimators

    def fit(self, X: Any, y: Any) -> SoftVote:  # noqa: N803 - sklearn API
        self.estimators_ = [_fit(clone(p), X, y) for _, p in self.estimators]
        codes = np.unique(np.asarray(y).astype(int))  # k > 2: the mean class matrix
        self.classes_ = codes if codes.size > 2 else np.array([0, 1])
        return self

    @classmethod
    def from_fitted(cls, estimators: list[tuple[str, Any]], fitted: list[Any],
                    y: Any) -> SoftVote:
        """The vote of pipelines already fitted on ``y``'s rows (as :meth:`fit` leaves it).

        Parameters
        ----------
        estimators
            The ``(name, unfitted pipeline)`` pairs (what :meth:`fit` would clone).
        fitted
            Each of them fitted on the same rows.
        y
            Those rows' class codes.
        """
        vote = cls(list(estimators))
        vote.estimators_ = list(fitted)
        codes = np.unique(np.asarray(y).astype(int))
        vote.classes_ = codes if codes.size > 2 else np.array([0, 1])
        return vote

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        p1 = np.mean([proba_block(e, X) for e in self.estimators_], axis=0)
        return p1 if p1.ndim == 2 else np.column_stack([1 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        if len(self.classes_) > 2:
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


#: From this many training samples the SVM is trained incrementally (SGD, hinge loss).
LARGE_SAMPLES = 200_000


@dataclass(frozen=True)
class Estimator:
    """One estimator kind: its classifier and the grid its search covers.

    Parameters
    ----------
    name
        What ``train --estimator`` takes.
    classifier
        ``classifier(large=..., random_state=...) -> unfitted classifier``.  ``large`` is
        true from :data:`LARGE_SAMPLES` training samples on; a kind that has an
        out-of-core variant returns it then.
    grid
        ``grid(large=...) -> {pipeline parameter: values}`` searched by the grouped CV.
    incremental
        Whether the ``large`` variant trains block by block on Dask arrays (its pipeline
        then has no in-memory ``VarianceThreshold`` step).
    vote
        Whether ``--estimator all``'s soft vote may include this kind.
    """

    name: str
    classifier: Callable[..., Any]
    grid: Callable[..., dict[str, list]]
    incremental: bool = False
    vote: bool = True


_REGISTRY: dict[str, Estimator] = {}


def register_estimator(estimator: Estimator) -> Estimator:
    """Add an estimator kind (``train --estimator NAME``; ``all`` includes it).

    Parameters
    ----------
    estimator
        The record; its name must not be registered yet, nor be ``all`` or
        :data:`ENSEMBLE`.

    Returns
    -------
    Estimator
        The record, registered.

    Raises
    ------
    ConfigError
        The name is taken or reserved.
    """
    if estimator.name in _REGISTRY or estimator.name in ("all", ENSEMBLE):
        raise ConfigError(f"estimator name {estimator.name!r} is taken")
    _REGISTRY[estimator.name] = estimator
    return estimator


def unregister_estimator(name: str) -> None:
    """Remove a registered estimator kind (a plugin's or a test's); unknown names pass."""
    _REGISTRY.pop(name, None)


def get_estimator(kind: str) -> Estimator:
    """The registered estimator ``kind``.

    Raises
    ------
    ConfigError
        No estimator of that name; the message lists the known ones.
    """
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(
            f"unknown estimator {kind!r}; use one of {list(_REGISTRY)} or all"
        ) from None


def estimator_names() -> tuple[str, ...]:
    """The registered estimator kinds, in registration order (what ``all`` trains)."""
    return tuple(_REGISTRY)


#: The feature names of the matrix the pipelines of this context are built for.
_FEATURE_NAMES: ContextVar[tuple[str, ...] | None] = ContextVar(
    "medpipe_pipeline_features", default=None
)


@contextlib.contextmanager
def pipeline_features(feature_names: Sequence[str]) -> Iterator[None]:
    """Build every pipeline of this block for a matrix with these columns.

    :func:`make_pipeline` (so the searches, the out-of-fold fits and the final fit)
    then starts each pipeline with the steps of the fitted families among them.

    Parameters
    ----------
    feature_names
        The columns of the training matrix, in order.
    """
    token = _FEATURE_NAMES.set(tuple(str(n) for n in feature_names))
    try:
        yield
    finally:
        _FEATURE_NAMES.reset(token)


def make_pipeline(
    kind: str,
    *,
    large: bool = False,
    random_state: int = 0,
    feature_names: Sequence[str] | None = None,
) -> Pipeline:
    """The unfitted pipeline of one estimator kind (default hyperparameters).

    Parameters
    ----------
    kind
        A registered kind (``svm``, ``logreg``, ``rf`` …).
    large
        The kind's out-of-core variant, where it has one (the incremental SGD SVM).
    random_state
        Seed of the stochastic parts.
    feature_names
        The columns of the matrix it will be fitted on (default: those of the
        enclosing :func:`pipeline_features` block, if any).  The steps of the fitted
        families among them (:func:`medpipe.features.fitted.fitted_steps`: a bag of
        visual words per keypoint family) come first, so every fit learns their state
        from its own training rows.
    """
    spec = get_estimator(kind)
    clf = spec.classifier(large=large, random_state=random_state)
    names = _FEATURE_NAMES.get() if feature_names is None else feature_names
    fitted = fitted_steps(names, random_state=random_state) if names else []
    if large and spec.incremental:  # stays a Dask array end to end (no in-memory step)
        return Pipeline([*fitted, ("scale", StandardScaler()), ("clf", clf)])
    return Pipeline(
        [*fitted, ("variance", VarianceThreshold()), ("scale", StandardScaler()),
         ("clf", clf)]
    )


def param_grid(kind: str, *, large: bool = False) -> dict[str, list]:
    """The hyperparameter grid searched for ``kind`` (empty for the incremental SVM)."""
    return get_estimator(kind).grid(large=large)


def _svm(*, large: bool, random_state: int) -> Any:
    if large:
        return Incremental(
            SGDClassifier(loss="hinge", alpha=1e-4, random_state=random_state),
            scoring=None,
            shuffle_blocks=True,
            random_state=random_state,
        )
    return CalibratedClassifierCV(
        LinearSVC(C=0.01, max_iter=20_000, random_state=random_state), cv=3, method="sigmoid"
    )


def _logreg(*, large: bool, random_state: int) -> Any:
    if _mc.current_classes() > 2:  # dask-ml's is binary only: scikit-learn's multinomial
        return _KClassLogisticRegression(C=1.0, solver="lbfgs", max_iter=300)
    return LogisticRegression(C=1.0, solver="lbfgs", max_iter=300)


#: Trees of the random forest.  On the demo's BreastMNIST features (546 training images,
#: 1,235 columns, the 5 selection folds) the best forest's mean fold AUC was 0.834 with
#: 100 trees and 0.830 with 300, its soft vote's 0.840 and 0.840: a third of the fits'
#: time for the same score (issue 15).
RF_TREES = 100


def _rf(*, large: bool, random_state: int) -> Any:
    return RandomForestClassifier(
        n_estimators=RF_TREES, n_jobs=1, random_state=random_state, class_weight=None
    )


# The grids (issue 15, the demo's BreastMNIST features, mean AUC over the 5 selection
# folds): the SVM's C = 0.1 scored lowest of its four (0.784 against 0.797-0.819) and
# took two thirds of its fits' time; the forest's min_samples_leaf = 3 scored below
# leaf 1 at both max_features (0.807 < 0.825, 0.815 < 0.830) and took 40 % of its time.
register_estimator(Estimator(
    "svm", _svm,
    lambda *, large: {} if large else {"clf__estimator__C": [1e-4, 1e-3, 1e-2]},
    incremental=True,
))
register_estimator(Estimator(
    "logreg", _logreg, lambda *, large: {"clf__C": [1e-3, 1e-2, 1e-1, 1.0]},
))
register_estimator(Estimator(
    "rf", _rf,
    lambda *, large: {"clf__max_features": ["sqrt", 0.1], "clf__min_samples_leaf": [1]},
))
# the residual CNN on the pixels family (Keras 3 / JAX, imported on first fit)
register_estimator(Estimator(_cnn.NAME, _cnn.classifier, _cnn.grid, vote=False))

#: The built-in estimator kinds (``estimator_names()`` also lists registered ones).
ESTIMATORS = estimator_names()
