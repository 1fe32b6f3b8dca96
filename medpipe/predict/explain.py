"""Which features drove one prediction: linear models and random forests.

* **Linear models** (``logreg``, ``svm``): contribution = coefficient × standardised
  value, the value after the pipeline's own ``VarianceThreshold`` and
  ``StandardScaler``.  For the logistic regression the units are log-odds and
  ``bias + sum(contributions)`` is exactly ``logit(probability)``.  For the SVM the
  coefficients are those of the :class:`~sklearn.svm.LinearSVC` (the mean over the
  calibration folds of :class:`~sklearn.calibration.CalibratedClassifierCV`), so the
  units are the SVM margin; the sign says which class a feature pushes towards.
* **Random forests** (``rf``): the per-sample tree-path attribution (Saabas, 2014): in
  each tree, every split on the sample's path moves the positive-class fraction from the
  parent node's to the child's, and that change is credited to the split's feature; the
  credits are averaged over the trees.  ``bias`` (the mean root fraction) plus the
  contributions is exactly the forest's probability.  It is deterministic: the same
  model and sample always give the same attribution.
* The soft vote of several estimators has no per-feature attribution here (its members
  are on different scales); :func:`explain` says so.

Only public attributes of the fitted scikit-learn / dask-ml objects are read
(``coef_``, ``intercept_``, ``calibrated_classifiers_``, ``estimators_``, ``tree_``,
``decision_path``, ``get_support``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask_ml.wrappers import Incremental, ParallelPostFit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

__all__ = ["LINEAR", "FOREST", "Contribution", "Explanation", "explain"]

#: ``Explanation.method`` of linear models.
LINEAR = "coefficient x standardised value"
#: ``Explanation.method`` of random forests.
FOREST = "tree-path attribution (Saabas)"


@dataclass(frozen=True)
class Contribution:
    """One feature's part in a prediction.

    Attributes
    ----------
    feature
        Feature name (as in the feature table).
    value
        The sample's feature value.
    standardised
        The value after the pipeline's scaler (what the classifier sees).
    contribution
        Its contribution, in :attr:`Explanation.units`.
    """

    feature: str
    value: float
    standardised: float
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """The per-feature attribution of one prediction.

    Attributes
    ----------
    method
        :data:`LINEAR`, :data:`FOREST`, or ``""`` when there is none (see ``note``).
    units
        ``log-odds``, ``SVM margin`` or ``probability``.
    bias
        The intercept (linear) or mean root fraction (forest): ``bias`` plus every
        contribution is the log-odds, margin or probability of the sample.
    contributions
        Every feature the classifier sees, largest absolute contribution first.
    note
        Why there is no attribution, where there is none.
    """

    method: str
    units: str
    bias: float
    contributions: tuple[Contribution, ...]
    note: str = ""

    def top(self, n: int | None) -> tuple[Contribution, ...]:
        """The ``n`` largest contributions (all of them for ``None``)."""
        return self.contributions if n is None else self.contributions[: max(n, 0)]


def _none(note: str) -> Explanation:
    return Explanation(method="", units="", bias=float("nan"), contributions=(), note=note)


def _pipeline(model: Any) -> Any:
    if isinstance(model, ParallelPostFit) and not isinstance(model, Incremental):
        return model.estimator
    return model


def _linear_terms(clf: Any) -> tuple[np.ndarray, float, str] | None:
    """``(coefficients, intercept, units)`` of a fitted linear classifier, else ``None``."""
    if isinstance(clf, CalibratedClassifierCV):
        fitted = [c.estimator for c in clf.calibrated_classifiers_]
        if not all(hasattr(e, "coef_") for e in fitted):
            return None
        coef = np.mean([np.ravel(e.coef_) for e in fitted], axis=0)
        bias = float(np.mean([np.ravel(e.intercept_)[0] for e in fitted]))
        return coef, bias, "SVM margin"
    base = clf.estimator_ if isinstance(clf, Incremental) else clf
    if not hasattr(base, "coef_"):
        return None
    units = "SVM margin" if getattr(base, "loss", None) == "hinge" else "log-odds"
    return np.ravel(base.coef_), float(np.ravel(base.intercept_)[0]), units


def _forest_terms(forest: RandomForestClassifier, z: np.ndarray) -> tuple[np.ndarray, float]:
    """Tree-path attribution of one standardised row ``z``: ``(contributions, bias)``."""
    pos = list(forest.classes_).index(1) if 1 in forest.classes_ else -1
    contrib = np.zeros(z.shape[0])
    bias = 0.0
    indicator, offsets = forest.decision_path(z[None, :])  # every tree's path, one call
    visited = np.sort(indicator.indices)
    for k, tree in enumerate(forest.estimators_):
        t = tree.tree_
        value = t.value[:, 0, :]
        frac = value[:, pos] / value.sum(axis=1)
        # node ids grow from parent to child, so the sorted path is root -> leaf
        lo, hi = offsets[k], offsets[k + 1]
        path = visited[(visited >= lo) & (visited < hi)] - lo
        bias += frac[path[0]]
        for parent, child in zip(path[:-1], path[1:], strict=True):
            contrib[t.feature[parent]] += frac[child] - frac[parent]
    n = len(forest.estimators_)
    return contrib / n, bias / n


def explain(model: Any, x: np.ndarray, feature_names: Sequence[str]) -> Explanation:
    """The per-feature attribution of one sample's prediction.

    Parameters
    ----------
    model
        A fitted medpipe model (what :func:`medpipe.models.load_model` returns).
    x
        The sample's feature vector, in ``feature_names`` order (the model's).
    feature_names
        The model's feature names (``model.json``'s ``feature_names``).

    Returns
    -------
    Explanation
        For linear models and random forests; otherwise (a soft vote, a non-finite
        feature, a pipeline whose steps derive new features) one with an empty
        ``method`` and the reason in ``note``.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        return _none("a feature the model needs is missing (NaN): no probability")
    pipe = _pipeline(model)
    if not isinstance(pipe, Pipeline):
        return _none(f"no per-feature attribution for a {type(pipe).__name__} "
                     "(the soft vote of several estimators)")
    names = np.asarray(list(feature_names), dtype=object)
    raw = x.copy()
    z = x[None, :].copy()
    for _, step in pipe.steps[:-1]:
        z = np.asarray(step.transform(z), dtype=np.float64)
        if hasattr(step, "get_support"):  # VarianceThreshold: the columns it keeps
            keep = np.asarray(step.get_support())
            names, raw = names[keep], raw[keep]
    z = z[0]
    if z.shape[0] != names.shape[0]:
        return _none("the pipeline derives its own features; no attribution to the "
                     "table's features")
    clf = pipe.steps[-1][1]
    if isinstance(clf, RandomForestClassifier):
        contrib, bias = _forest_terms(clf, z)
        method, units = FOREST, "probability"
    else:
        terms = _linear_terms(clf)
        if terms is None:
            return _none(f"no per-feature attribution for a {type(clf).__name__}")
        coef, bias, units = terms
        contrib, method = coef * z, LINEAR
    order = np.argsort(-np.abs(contrib), kind="stable")
    return Explanation(
        method=method,
        units=units,
        bias=float(bias),
        contributions=tuple(
            Contribution(str(names[i]), float(raw[i]), float(z[i]), float(contrib[i]))
            for i in order
        ),
    )
