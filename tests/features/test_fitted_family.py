"""The fitted-family contract (:mod:`medpipe.features.fitted`), for every registered
family with a ``fitted`` hook: its pipeline step is a scikit-learn transformer (``fit``
returns ``self``, unfitted ``transform`` raises ``NotFittedError``, ``clone`` works,
fitted state in ``*_`` attributes), it passes the other columns through and appends
exactly the names it announces, it is the first step of the model pipelines, and a
skops round trip through the registry's trusted list transforms identically."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import skops.io as sio
from pydicom.data import get_testdata_file
from skimage import data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from medpipe.errors import ModelError
from medpipe.features import FeatureConfig, compute_features
from medpipe.features.fitted import fitted_families, fitted_feature_names, fitted_steps
from medpipe.models import estimators as est
from medpipe.models.registry import TRUSTED_TYPES

FITTED = [f.name for f in fitted_families()]


def test_keypoint_families_are_fitted() -> None:
    assert {"sift", "orb"} <= set(FITTED)
    # the ordinary families have no fitted step
    assert not fitted_steps(FeatureConfig(families=("firstorder", "glcm")).feature_names())


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Real grey images (skimage's and pydicom's), as ``z, y, x``."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(float)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(float)
    return [a[None] for a in (data.camera()[::4, ::4], data.coins()[::2, ::2],
                              data.moon()[::4, ::4], ct, mr, mr[::-1])]


@pytest.fixture(scope="module", params=FITTED)
def matrix(request: pytest.FixtureRequest, images: list[np.ndarray]) -> tuple:
    family = request.param
    cfg = FeatureConfig(families=("firstorder", family))
    names = cfg.feature_names()
    rows = [compute_features(img, None, spacing=(1, 1, 1), config=cfg) for img in images]
    x = np.array([[r[n] for n in names] for r in rows])
    assert np.isfinite(x).all()
    return family, names, x


def _step(family: str, names: list[str]) -> tuple:
    from medpipe.features import get_family

    step = get_family(family).fitted(names, 0)
    assert step is not None and step.name and step.feature_names_out
    return step


def test_contract(matrix: tuple) -> None:
    family, names, x = matrix
    step = _step(family, names)
    t = step.transformer
    with pytest.raises(NotFittedError):
        t.transform(x)
    twin = clone(t)
    assert type(twin) is type(t) and twin.get_params() == t.get_params()
    assert t.fit(x) is t
    check_is_fitted(t)
    fitted = [a for a in vars(t) if a.endswith("_") and not a.startswith("_")]
    assert fitted and not any(a.endswith("_") for a in vars(twin))  # clone is unfitted
    out = t.transform(x)
    assert out.shape == (len(x), len(step.feature_names_out)) and np.isfinite(out).all()
    kept = [n for n in step.feature_names_out if n in names]
    assert kept == [n for n in names if n in set(step.feature_names_out)]  # order kept
    np.testing.assert_array_equal(out[:, : len(kept)], x[:, [names.index(n) for n in kept]])
    assert len(kept) < len(names)  # it consumed its own columns
    # the same seed refits the same state on the same rows
    again = clone(t).fit(x)
    np.testing.assert_array_equal(again.transform(x), out)
    assert fitted_feature_names(names) == list(step.feature_names_out)


def test_absent_or_incomplete_columns(matrix: tuple) -> None:
    family, names, _ = matrix
    others = [n for n in names if not n.startswith(f"{family}_")]
    assert _family_step(family, others) is None
    with pytest.raises(ModelError, match=family):
        _family_step(family, names[:-1])


def _family_step(family: str, names: list[str]):
    from medpipe.features import get_family

    return get_family(family).fitted(names, 0)


def test_first_step_of_every_model_pipeline(matrix: tuple) -> None:
    family, names, _ = matrix
    step = _step(family, names)
    for kind in est.estimator_names():
        pipe = est.make_pipeline(kind, feature_names=names)
        assert pipe.steps[0][0] == step.name
        assert pipe.steps[0][1].get_params() == step.transformer.get_params()
        with est.pipeline_features(names):
            assert est.make_pipeline(kind).steps[0][0] == step.name
        assert est.make_pipeline(kind).steps[0][0] == "variance"  # outside the block
    big = est.make_pipeline("svm", large=True, feature_names=names)
    assert [s for s, _ in big.steps] == [step.name, "scale", "clf"]


def test_skops_round_trip_with_the_trusted_list(matrix: tuple) -> None:
    family, names, x = matrix
    pipe = est.make_pipeline("logreg", feature_names=names)
    y = (x[:, names.index("firstorder_mean")] > np.median(x[:, names.index("firstorder_mean")]))
    pipe.fit(x, y.astype(int))
    blob = sio.dumps(pipe)
    untrusted = set(sio.get_untrusted_types(data=blob))
    assert f"{type(pipe[0]).__module__}.{type(pipe[0]).__name__}" in untrusted
    assert untrusted <= set(TRUSTED_TYPES)
    back = sio.loads(blob, trusted=list(TRUSTED_TYPES))
    np.testing.assert_array_equal(back[0].transform(x), pipe[0].transform(x))
    np.testing.assert_array_equal(back.predict_proba(x), pipe.predict_proba(x))
