"""SIFT and ORB keypoint descriptors: the ``sift`` and ``orb`` feature families.

Both families are *fitted* (:mod:`medpipe.features.fitted`): the feature table holds
each sample's descriptors, and the bag-of-visual-words vocabulary is learnt inside the
model pipeline from the training rows only
(:class:`~medpipe.features.visualwords.BagOfVisualWords`).

* :func:`sift_descriptors` (``skimage.feature.SIFT``, 128 values 0-255) and
  :func:`orb_descriptors` (``skimage.feature.ORB``, 256 bits) of one 2-D grey image;
* :func:`keypoint_plane`: the plane a sample is described on — the ROI's largest
  ``z`` slice of its bounding box (the whole middle slice without ROI), upsampled
  (linear) so that its shorter edge is at least :data:`MIN_EDGE` pixels, since both
  detectors need room around a keypoint (ORB finds nothing in a 28×28 thumbnail);
  only keypoints inside the ROI are kept;
* the table columns of family ``f``: ``f_keypoints`` (how many descriptors were
  kept, at most :data:`MAX_KEYPOINTS`) and ``f_d<i>_<j>`` (value ``j`` of descriptor
  ``i``, 0 for unused slots).  SIFT keeps the keypoints of the largest scales
  (skimage reports no SIFT response), ORB the strongest Harris responses; ORB's bits
  are stored packed, 32 bytes per descriptor (:func:`numpy.packbits`).

:func:`slice_descriptors` describes each slice of a volume; the codebook helpers
(:func:`descriptor_array`, :func:`learn_codebook`, :func:`assign_words`,
:func:`bovw_histogram`) live in :mod:`medpipe.features.visualwords` and are importable
from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.feature import ORB, SIFT
from skimage.transform import resize

from medpipe.errors import ConfigError, ModelError
from medpipe.features.fitted import FittedStep
from medpipe.features.registry import Family, register_family
from medpipe.features.visualwords import (
    BagOfVisualWords,
    assign_words,
    bovw_histogram,
    descriptor_array,
    learn_codebook,
)

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "N_BITS",
    "SIFT_SIZE",
    "MAX_KEYPOINTS",
    "MIN_EDGE",
    "MAX_EDGE",
    "N_WORDS",
    "sift_descriptors",
    "keypoint_plane",
    "keypoint_feature_names",
    "keypoint_features",
    "orb_descriptors",
    "slice_descriptors",
    "descriptor_array",
    "learn_codebook",
    "assign_words",
    "bovw_histogram",
]

#: ORB descriptor length in bits (one column per bit)
N_BITS = 256
#: SIFT descriptor length (4 x 4 histograms of 8 orientations, values 0-255)
SIFT_SIZE = 128
#: descriptors kept per sample in the feature table
MAX_KEYPOINTS = 32
#: a plane's shorter edge is upsampled to at least this many pixels before detection
MIN_EDGE = 128
#: ... but never so much that its longer edge passes this many pixels
MAX_EDGE = 1024
#: vocabulary size of the model pipeline's bag of visual words
N_WORDS = 32


def _unit(image: np.ndarray, what: str) -> np.ndarray | None:
    """The 2-D image min-max scaled to ``[0, 1]``; ``None`` for a flat one."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ConfigError(f"{what} needs a 2-D image, got shape {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    return None if hi == lo else (img - lo) / (hi - lo)


def _orb(
    image: np.ndarray, *, n_keypoints: int, fast_threshold: float, n_scales: int,
    downscale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keypoints (n, 2) row/col, responses (n,), descriptors (n, 256) 0/1 uint8)``,
    strongest Harris response first."""
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros((0, N_BITS), dtype=np.uint8))
    img = _unit(image, "orb_descriptors")
    if img is None:
        return empty
    orb = ORB(n_keypoints=n_keypoints, fast_threshold=fast_threshold, n_scales=n_scales,
              downscale=downscale)
    try:
        orb.detect_and_extract(img)
    except RuntimeError:  # skimage: "ORB found no features"
        return empty
    order = np.argsort(-np.asarray(orb.responses, dtype=np.float64), kind="stable")
    return (np.asarray(orb.keypoints, dtype=np.float64)[order],
            np.asarray(orb.responses, dtype=np.float64)[order],
            np.asarray(orb.descriptors, dtype=np.uint8)[order])


def orb_descriptors(
    image: np.ndarray,
    *,
    n_keypoints: int = 200,
    fast_threshold: float = 0.08,
    n_scales: int = 8,
    downscale: float = 1.2,
) -> np.ndarray:
    """ORB descriptors of a 2-D grey image.

    The image is min-max scaled to ``[0, 1]`` first, so ``fast_threshold`` means the same
    for CT, MR or 8-bit photographs.

    Parameters
    ----------
    image
        2-D intensities (any dtype).
    n_keypoints, fast_threshold, n_scales, downscale
        Passed to :class:`skimage.feature.ORB`.

    Returns
    -------
    numpy.ndarray
        ``(n, 256)`` ``uint8`` array of 0/1 bits, in skimage's order; ``(0, 256)`` when
        ORB finds no keypoint (a flat image, or one too small for ORB's border).
    """
    img = _unit(image, "orb_descriptors")
    empty = np.zeros((0, N_BITS), dtype=np.uint8)
    if img is None:
        return empty
    orb = ORB(
        n_keypoints=n_keypoints,
        fast_threshold=fast_threshold,
        n_scales=n_scales,
        downscale=downscale,
    )
    try:
        orb.detect_and_extract(img)
    except RuntimeError:  # skimage: "ORB found no features"
        return empty
    return np.asarray(orb.descriptors, dtype=np.uint8)


def _sift(image: np.ndarray, *, upsampling: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keypoints (n, 2) row/col, sigmas (n,), descriptors (n, 128) uint8)``, largest
    scale first (ties in skimage's order)."""
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros((0, SIFT_SIZE), dtype=np.uint8))
    img = _unit(image, "sift_descriptors")
    if img is None:
        return empty
    sift = SIFT(upsampling=upsampling)
    try:
        sift.detect_and_extract(img)
    except RuntimeError:  # skimage: "SIFT found no features"
        return empty
    sigmas = np.asarray(sift.sigmas, dtype=np.float64)
    order = np.argsort(-sigmas, kind="stable")
    return (np.asarray(sift.positions, dtype=np.float64)[order], sigmas[order],
            np.asarray(sift.descriptors, dtype=np.uint8)[order])


def sift_descriptors(image: np.ndarray, *, upsampling: int = 2) -> np.ndarray:
    """SIFT descriptors (``skimage.feature.SIFT``) of a 2-D grey image.

    Parameters
    ----------
    image
        2-D intensities (any dtype); min-max scaled to ``[0, 1]`` first, so SIFT's
        contrast threshold means the same for any modality.
    upsampling
        SIFT's initial upscaling (1, 2 or 4).

    Returns
    -------
    numpy.ndarray
        ``(n, 128)`` ``uint8``, largest keypoint scale (``sigma``) first; ``(0, 128)``
        when SIFT finds no keypoint (a flat or tiny image).
    """
    return _sift(image, upsampling=upsampling)[2]


def slice_descriptors(volume: np.ndarray, **orb_options: float) -> list[np.ndarray]:
    """:func:`orb_descriptors` of each ``z`` slice of a ``z, y, x`` volume (options as there)."""
    vol = np.asarray(volume)
    if vol.ndim == 2:
        vol = vol[None]
    return [orb_descriptors(s, **orb_options) for s in vol]


# ------------------------------------------------------------------ the sift/orb families

#: family -> (values stored per descriptor, bits packed into bytes)
_LAYOUT: dict[str, tuple[int, bool]] = {"sift": (SIFT_SIZE, False), "orb": (N_BITS // 8, True)}


def keypoint_plane(
    grey: np.ndarray, mask: np.ndarray, *, min_edge: int = MIN_EDGE, max_edge: int = MAX_EDGE
) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D plane (and its ROI) that a sample's keypoints are detected on.

    Parameters
    ----------
    grey
        ``z, y, x`` (or ``y, x``) intensities: the ROI's bounding box.
    mask
        The ROI on the same grid.
    min_edge, max_edge
        Upsample (linear; the mask by nearest neighbour) so that the shorter edge has
        at least ``min_edge`` pixels, unless the longer one would pass ``max_edge``
        (a thin ROI is upsampled less; a plane is never downsampled).

    Returns
    -------
    (plane, plane_mask)
        The ``z`` slice with the most ROI voxels (of those, the one nearest the
        middle slice ``z // 2``, which is the one for a whole image), upsampled.
    """
    g = np.asarray(grey, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if g.ndim == 2:
        g, m = g[None], m[None]
    area = m.reshape(len(m), -1).sum(axis=1)
    best = np.flatnonzero(area == area.max())
    z = int(best[np.argmin(np.abs(best - len(m) // 2))])
    plane, pmask = g[z], m[z]
    short, long = min(plane.shape), max(plane.shape)
    factor = min(min_edge / max(short, 1), max(1.0, max_edge / max(long, 1)))
    if factor > 1:
        shape = tuple(int(round(n * factor)) for n in plane.shape)
        plane = resize(plane, shape, order=1, anti_aliasing=False, preserve_range=True)
        pmask = resize(pmask, shape, order=0, anti_aliasing=False,
                       preserve_range=True).astype(bool)
    return plane, pmask


def _inside(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    rc = np.rint(points).astype(int)
    rc[:, 0] = np.clip(rc[:, 0], 0, mask.shape[0] - 1)
    rc[:, 1] = np.clip(rc[:, 1], 0, mask.shape[1] - 1)
    return mask[rc[:, 0], rc[:, 1]]


def keypoint_feature_names(family: str, *, max_keypoints: int = MAX_KEYPOINTS) -> list[str]:
    """``<family>_keypoints``, then ``<family>_d<i>_<j>`` for every descriptor slot."""
    size, _ = _LAYOUT[family]
    return [f"{family}_keypoints"] + [
        f"{family}_d{i:02d}_{j:03d}" for i in range(max_keypoints) for j in range(size)
    ]


def keypoint_features(
    grey: np.ndarray, mask: np.ndarray, *, family: str, max_keypoints: int = MAX_KEYPOINTS
) -> dict[str, float]:
    """The table columns of ``family`` (``sift`` or ``orb``) for one sample.

    The descriptors of the keypoints inside the ROI on :func:`keypoint_plane`, at most
    ``max_keypoints`` (SIFT: largest scale first; ORB: strongest response first),
    zero-padded; ORB's bits packed into bytes.  SIFT upsamples planes under 256 pixels
    by 2 itself (skimage's default), larger ones not.
    """
    plane, pmask = keypoint_plane(grey, mask)
    if family == "sift":
        points, _, desc = _sift(plane, upsampling=2 if min(plane.shape) < 256 else 1)
    elif family == "orb":
        points, _, desc = _orb(plane, n_keypoints=4 * max_keypoints, fast_threshold=0.08,
                               n_scales=8, downscale=1.2)
    else:
        raise ConfigError(f"unknown keypoint family {family!r}; use sift or orb")
    desc = desc[_inside(points, pmask)][:max_keypoints]
    size, packed = _LAYOUT[family]
    if packed:
        desc = np.packbits(desc.astype(bool), axis=1)
    values = np.zeros((max_keypoints, size))
    values[: len(desc)] = desc
    names = keypoint_feature_names(family, max_keypoints=max_keypoints)
    return dict(zip(names, [float(len(desc)), *values.ravel().tolist()], strict=True))


def _fitted_step(family: str, feature_names: Sequence[str], random_state: int) -> FittedStep | None:
    """The :class:`~medpipe.features.visualwords.BagOfVisualWords` step of ``family``."""
    names = list(feature_names)
    want = keypoint_feature_names(family)
    if want[0] not in names and not any(n.startswith(f"{family}_d") for n in names):
        return None
    start = names.index(want[0]) if want[0] in names else -1
    if start < 0 or names[start : start + len(want)] != want:
        missing = len(set(want) - set(names))
        raise ModelError(
            f"the {family} feature family needs all its {len(want)} table columns in order, "
            f"{missing} are missing (dropped for missing values on the training rows?)"
        )
    size, packed = _LAYOUT[family]
    bovw = BagOfVisualWords(
        n_words=N_WORDS, random_state=random_state, count_column=start,
        first_column=start + 1, max_keypoints=MAX_KEYPOINTS, descriptor_size=size,
        packed_bits=packed, family=family,
    )
    return FittedStep(f"bovw_{family}", bovw, tuple(bovw.feature_names_out(names)))


def _plane_inputs(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    return sample.grey_roi, sample.mask_roi


def _sift_names(config: FeatureConfig) -> list[str]:
    return keypoint_feature_names("sift")


def _sift_compute(sample: Sample) -> dict[str, float]:
    return keypoint_features(*_plane_inputs(sample), family="sift")


def _sift_fitted(feature_names: Sequence[str], random_state: int) -> Any:
    return _fitted_step("sift", feature_names, random_state)


def _orb_names(config: FeatureConfig) -> list[str]:
    return keypoint_feature_names("orb")


def _orb_compute(sample: Sample) -> dict[str, float]:
    return keypoint_features(*_plane_inputs(sample), family="orb")


def _orb_fitted(feature_names: Sequence[str], random_state: int) -> Any:
    return _fitted_step("orb", feature_names, random_state)


SIFT_FAMILY = register_family(Family("sift", _sift_names, _sift_compute, fitted=_sift_fitted))
ORB_FAMILY = register_family(Family("orb", _orb_names, _orb_compute, fitted=_orb_fitted))
