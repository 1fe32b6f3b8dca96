"""ORB descriptors and bag-of-visual-words on real images (skimage's camera, coins and
astronaut; pydicom's MR_small), checked against scikit-image and scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from skimage import data
from skimage.color import rgb2gray
from skimage.feature import ORB
from sklearn.cluster import KMeans

from medpipe.errors import ConfigError
from medpipe.features.keypoints import (
    N_BITS,
    assign_words,
    bovw_histogram,
    descriptor_array,
    learn_codebook,
    orb_descriptors,
    slice_descriptors,
)

N_WORDS = 8


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    return {
        "camera": data.camera(),
        "coins": data.coins(),
        "astronaut": rgb2gray(data.astronaut()),
        "mr_small": mr,
    }


@pytest.fixture(scope="module")
def descriptors(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: orb_descriptors(v, n_keypoints=150, fast_threshold=0.05) for k, v in images.items()}


@pytest.fixture(scope="module")
def codebook(descriptors: dict[str, np.ndarray]) -> np.ndarray:
    return learn_codebook(
        descriptor_array(list(descriptors.values())), n_words=N_WORDS, random_state=0
    )


def test_descriptors_match_skimage_orb(images: dict[str, np.ndarray]) -> None:
    cam = images["camera"]
    assert cam.min() == 0 and cam.max() == 255  # so min-max scaling is skimage's img_as_float
    ours = orb_descriptors(cam, n_keypoints=100)
    orb = ORB(n_keypoints=100)
    orb.detect_and_extract(cam / 255.0)
    np.testing.assert_array_equal(ours, orb.descriptors.astype(np.uint8))
    assert ours.shape == (100, N_BITS) and set(np.unique(ours)) <= {0, 1}


def test_descriptors_of_small_mr_and_flat_images(descriptors: dict[str, np.ndarray]) -> None:
    mr = descriptors["mr_small"]
    assert mr.ndim == 2 and mr.shape[1] == N_BITS and 0 < len(mr) <= 150
    assert orb_descriptors(np.full((64, 64), 7.0)).shape == (0, N_BITS)
    with pytest.raises(ConfigError):
        orb_descriptors(np.zeros((2, 64, 64)))


def test_slice_descriptors_per_slice(images: dict[str, np.ndarray]) -> None:
    mr = images["mr_small"].astype(np.float64)
    vol = np.stack([mr, mr[::-1], np.zeros_like(mr)])
    per = slice_descriptors(vol, fast_threshold=0.05)
    assert len(per) == 3 and len(per[2]) == 0
    np.testing.assert_array_equal(per[0], orb_descriptors(mr, fast_threshold=0.05))


def test_descriptor_array_is_lazy_stack(descriptors: dict[str, np.ndarray]) -> None:
    arr = descriptor_array(list(descriptors.values()))
    assert isinstance(arr, da.Array) and arr.numblocks == (len(descriptors), 1)
    np.testing.assert_array_equal(arr.compute(), np.concatenate(list(descriptors.values())))


def test_codebook_deterministic(descriptors: dict[str, np.ndarray], codebook: np.ndarray) -> None:
    again = learn_codebook(
        descriptor_array(list(descriptors.values())), n_words=N_WORDS, random_state=0
    )
    assert codebook.shape == (N_WORDS, N_BITS)
    np.testing.assert_array_equal(codebook, again)
    # centres are means of 0/1 bits
    assert codebook.min() >= 0 and codebook.max() <= 1


def test_histograms_match_sklearn_words(
    descriptors: dict[str, np.ndarray], codebook: np.ndarray
) -> None:
    # an sklearn KMeans whose centres are exactly the codebook: fitted on the centres
    # themselves, each centre is its own cluster, so one iteration leaves them unchanged
    km = KMeans(n_clusters=N_WORDS, init=codebook, n_init=1, max_iter=1).fit(codebook)
    np.testing.assert_allclose(km.cluster_centers_, codebook, atol=1e-12)
    for name, d in descriptors.items():
        words = km.predict(d.astype(np.float64))
        np.testing.assert_array_equal(assign_words(d, codebook), words, err_msg=name)
        h = bovw_histogram(d, codebook)
        assert h.shape == (N_WORDS,) and h.min() >= 0
        assert h.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(h, np.bincount(words, minlength=N_WORDS) / len(words))


def test_histogram_of_no_keypoints_is_nan(codebook: np.ndarray) -> None:
    h = bovw_histogram(np.zeros((0, N_BITS)), codebook)
    assert h.shape == (N_WORDS,) and np.isnan(h).all()


def test_codebook_rejects_bad_sizes(descriptors: dict[str, np.ndarray]) -> None:
    arr = descriptor_array([descriptors["mr_small"]])
    with pytest.raises(ConfigError):
        learn_codebook(arr, n_words=len(descriptors["mr_small"]) + 1, random_state=0)
