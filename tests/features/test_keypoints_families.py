"""The ``sift`` and ``orb`` families through the lazy feature graph, against
scikit-image's SIFT and ORB run directly on the same real images (skimage's camera and
astronaut, pydicom's MR_small, a BreastMNIST thumbnail), and the bag-of-visual-words
step against scikit-learn's MiniBatchKMeans."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom.data import get_testdata_file
from skimage import data
from skimage.color import rgb2gray
from skimage.feature import ORB, SIFT
from skimage.transform import resize
from sklearn.cluster import MiniBatchKMeans

from medpipe.features import FeatureConfig, extract
from medpipe.features import keypoints as kp
from medpipe.features.visualwords import BagOfVisualWords
from medpipe.sample import packaged_medmnist

K = kp.MAX_KEYPOINTS


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def _table_descriptors(values: dict[str, float], family: str) -> np.ndarray:
    """The stored descriptors of one sample, decoded by name (ORB bits unpacked)."""
    n = int(values[f"{family}_keypoints"])
    size = 128 if family == "sift" else 32
    rows = np.array([[values[f"{family}_d{i:02d}_{j:03d}"] for j in range(size)]
                     for i in range(K)])
    assert not rows[n:].any(), "unused descriptor slots are zero"
    rows = rows[:n].astype(np.uint8)
    return np.unpackbits(rows, axis=1) if family == "orb" else rows


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, float]]:
    """Features of three real images through ``extract`` (dask graph, computed once)."""
    cam = data.camera()[::2, ::2]  # 256 x 256: no upsampling, SIFT without its 2x
    astro = data.astronaut()[::4, ::4]  # 128 x 128 RGB: the luminance is described
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(float)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 30) ** 2 + (xx - 34) ** 2 <= 22**2
    images = [
        ("camera", xr.DataArray(cam, dims=("y", "x"), attrs={"spacing": [1.0, 1.0]}), {}),
        ("astronaut", xr.DataArray(np.moveaxis(astro, -1, 0), dims=("c", "y", "x"),
                                   attrs={"spacing": [1.0, 1.0]}), {}),
        ("mr", xr.DataArray(mr, dims=("y", "x"), attrs={"spacing": [1.0, 1.0]}),
         {"disk": xr.DataArray(disk, dims=("y", "x"))}),
    ]
    cfg = FeatureConfig(families=("firstorder", "sift", "orb"))
    ds = extract(images, config=cfg)
    assert isinstance(ds["features"].data, da.Array)  # lazy until here
    vals = ds["features"].values
    names = [str(f) for f in ds["feature"].values]
    out = {str(s): dict(zip(names, row, strict=True)) for s, row in zip(
        ds["sample"].values, vals, strict=True)}
    out["_planes"] = {"camera": cam, "astronaut": rgb2gray(astro), "mr": mr, "disk": disk}
    return out


def test_names_are_the_config_names() -> None:
    cfg = FeatureConfig(families=("sift", "orb"))
    names = cfg.feature_names()
    assert names[0] == "sift_keypoints" and names[1 + 128 * K] == "orb_keypoints"
    assert len(names) == 2 + 128 * K + 32 * K


def test_whole_image_descriptors_are_skimage_sift_and_orb(table: dict) -> None:
    for key in ("camera", "astronaut"):
        plane = table["_planes"][key]
        assert min(plane.shape) >= kp.MIN_EDGE  # described as it is
        sift = SIFT(upsampling=1 if min(plane.shape) >= 256 else 2)
        sift.detect_and_extract(_unit(plane))
        order = np.argsort(-sift.sigmas, kind="stable")[:K]  # the largest scales
        got = _table_descriptors(table[key], "sift")
        assert len(got) == K < len(sift.descriptors)
        np.testing.assert_array_equal(got, sift.descriptors[order], err_msg=key)
        # ORB: skimage's own choice of the K strongest Harris responses
        orb = ORB(n_keypoints=K, fast_threshold=0.08)
        orb.detect_and_extract(_unit(plane))
        ref = orb.descriptors[np.argsort(-orb.responses, kind="stable")]
        np.testing.assert_array_equal(_table_descriptors(table[key], "orb"), ref, err_msg=key)


def test_roi_descriptors_keep_keypoints_inside_the_upsampled_roi(table: dict) -> None:
    mr, disk = table["_planes"]["mr"], table["_planes"]["disk"]
    rows, cols = np.flatnonzero(disk.any(1)), np.flatnonzero(disk.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop, mcrop = mr[box], disk[box]
    shape = tuple(round(n * kp.MIN_EDGE / min(crop.shape)) for n in crop.shape)
    plane = resize(crop, shape, order=1, anti_aliasing=False, preserve_range=True)
    pmask = resize(mcrop, shape, order=0, anti_aliasing=False, preserve_range=True) > 0.5
    values = table["mr/disk"]
    sift = SIFT(upsampling=2)
    sift.detect_and_extract(_unit(plane))
    keep = [i for i in np.argsort(-sift.sigmas, kind="stable")
            if pmask[tuple(np.clip(np.rint(sift.positions[i]).astype(int), 0,
                                   np.array(shape) - 1))]][:K]
    assert 0 < len(keep) and len(keep) < len(sift.descriptors)  # some fell outside
    np.testing.assert_array_equal(_table_descriptors(values, "sift"), sift.descriptors[keep])
    orb = ORB(n_keypoints=4 * K, fast_threshold=0.08)
    orb.detect_and_extract(_unit(plane))
    order = np.argsort(-orb.responses, kind="stable")
    inside = [i for i in order if pmask[tuple(np.clip(np.rint(orb.keypoints[i]).astype(int),
                                                      0, np.array(shape) - 1))]][:K]
    np.testing.assert_array_equal(_table_descriptors(values, "orb"), orb.descriptors[inside])
    assert values["orb_keypoints"] == len(inside) > 0


def test_thumbnail_is_upsampled_and_flat_image_has_none() -> None:
    npz = packaged_medmnist("breastmnist")
    if npz is None:
        pytest.skip("the packaged BreastMNIST file is not installed")
    thumb = np.load(npz)["train_images"][0].astype(float)
    assert thumb.shape == (28, 28)
    with pytest.raises(RuntimeError):  # ORB's border leaves a 28 x 28 image nothing
        ORB(n_keypoints=K).detect_and_extract(_unit(thumb))
    plane, mask = kp.keypoint_plane(thumb, np.ones_like(thumb, bool))
    assert plane.shape == (kp.MIN_EDGE, kp.MIN_EDGE) and mask.all()
    for family in ("sift", "orb"):
        got = kp.keypoint_features(thumb, np.ones_like(thumb, bool), family=family)
        assert got[f"{family}_keypoints"] > 0, family
        flat = kp.keypoint_features(np.full((40, 40), 3.0), np.ones((40, 40), bool),
                                    family=family)
        assert flat[f"{family}_keypoints"] == 0 and not any(flat.values())


def test_visual_words_match_sklearn_minibatch_kmeans(table: dict) -> None:
    cfg = FeatureConfig(families=("firstorder", "sift", "orb"))
    names = cfg.feature_names()
    keys = ["camera", "astronaut", "mr/disk"]
    x = np.array([[table[k][n] for n in names] for k in keys])
    step = kp.SIFT_FAMILY.fitted(names, 0)  # the registry's fitted hook
    bovw = step.transformer.set_params(n_words=8)
    assert bovw.fit(x) is bovw
    desc = [_table_descriptors(table[k], "sift").astype(float) for k in keys]
    ref = MiniBatchKMeans(n_clusters=8, random_state=0, batch_size=1024, max_iter=100,
                          n_init=3).fit(np.concatenate(desc))
    np.testing.assert_allclose(bovw.cluster_centers_, ref.cluster_centers_)
    out = bovw.transform(x)
    start = names.index("sift_d00_000")
    rest = np.delete(x, np.s_[start : start + 128 * K], axis=1)
    np.testing.assert_array_equal(out[:, : rest.shape[1]], rest)  # passed through
    for i, d in enumerate(desc):
        hist = np.bincount(ref.predict(d), minlength=8) / len(d)
        np.testing.assert_allclose(out[i, rest.shape[1]:], hist)
    # a sample without keypoints has an all-zero histogram, not NaN
    empty = x[:1].copy()
    empty[0, names.index("sift_keypoints")] = 0
    assert not bovw.transform(empty)[0, rest.shape[1]:].any()
    # Dask input: fitted block by block (partial_fit), transformed block-wise, same width
    xd = da.from_array(x, chunks=(1, -1))
    lazy = BagOfVisualWords(**bovw.get_params()).set_params(batch_size=8).fit(xd)
    assert lazy.cluster_centers_.shape == (8, 128) and lazy.n_descriptors_ == sum(map(len, desc))
    res = lazy.transform(xd)
    assert isinstance(res, da.Array)
    np.testing.assert_allclose(res.compute(), lazy.transform(x))


def test_plane_of_a_volume_and_of_a_thin_roi() -> None:
    vol = np.stack([np.full((40, 50), float(k)) for k in range(4)])
    plane, mask = kp.keypoint_plane(vol, np.ones(vol.shape, bool))
    assert (plane == 2).all() and mask.all()  # the middle slice z // 2, as `pixels`
    assert plane.shape == (128, 160)
    roi = np.zeros(vol.shape, bool)
    roi[0, :5] = roi[3, :10] = True
    plane, mask = kp.keypoint_plane(vol, roi)
    assert (plane == 3).all() and mask.sum() == 10 * 50 * 128**2 // 40**2  # most voxels
    thin, _ = kp.keypoint_plane(np.zeros((4, 600)), np.ones((4, 600), bool))
    assert thin.shape == (7, kp.MAX_EDGE)  # upsampled less: the long edge is capped
    big, _ = kp.keypoint_plane(np.zeros((300, 2000)), np.ones((300, 2000), bool))
    assert big.shape == (300, 2000)  # never downsampled
