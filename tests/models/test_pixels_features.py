"""The ``pixels`` and ``hog`` feature families against scikit-image on a real image."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from skimage.feature import hog
from skimage.transform import resize

from medpipe.features import FeatureConfig, compute_features


def test_pixels_and_hog_match_skimage() -> None:
    img = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(float)
    cfg = FeatureConfig(families=("pixels", "hog"), pixels_size=16)
    got = compute_features(img[None], None, spacing=(1, 1, 1), config=cfg)
    assert list(got) == cfg.feature_names()
    plane = resize(img, (16, 16), order=1, anti_aliasing=True, preserve_range=True)
    pix = np.array([got[n] for n in cfg.feature_names() if n.startswith("pixel_")])
    np.testing.assert_allclose(pix, plane.ravel())
    ref = hog(plane, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2),
              block_norm="L2-Hys")
    h = np.array([got[n] for n in cfg.feature_names() if n.startswith("hog_")])
    np.testing.assert_allclose(h, ref)
    # an image already of the size is taken as it is
    small = img[:16, :16]
    same = compute_features(small[None], None, spacing=(1, 1, 1),
                            config=FeatureConfig(families=("pixels",), pixels_size=16))
    np.testing.assert_array_equal(list(same.values()), small.ravel())
