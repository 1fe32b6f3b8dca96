"""ORB keypoint descriptors and a bag-of-visual-words (BoVW) histogram for 2-D images.

1. :func:`orb_descriptors` gives the binary ORB descriptors (``skimage.feature.ORB``) of
   one 2-D image, or of each ``z`` slice of a volume with :func:`slice_descriptors`;
2. :func:`descriptor_array` stacks many images' descriptors into one dask array
   (a chunk per image, the 256 bits as ``float64`` columns in one block);
3. :func:`learn_codebook` clusters that array with ``dask_ml.cluster.KMeans``: the
   cluster centres are the visual words;
4. :func:`bovw_histogram` assigns each descriptor of an image to its nearest word
   (Euclidean, as k-means does) and returns the normalised word histogram, a
   fixed-length feature vector for any number of keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
from skimage.feature import ORB

from medpipe.errors import ConfigError

__all__ = [
    "N_BITS",
    "orb_descriptors",
    "slice_descriptors",
    "descriptor_array",
    "learn_codebook",
    "assign_words",
    "bovw_histogram",
]

#: ORB descriptor length in bits (one column per bit)
N_BITS = 256


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
        ``(n, 256)`` ``uint8`` array of 0/1 bits; ``(0, 256)`` when ORB finds no
        keypoint (a flat image, or one too small for ORB's border).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ConfigError(f"orb_descriptors needs a 2-D image, got shape {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    empty = np.zeros((0, N_BITS), dtype=np.uint8)
    if hi == lo:
        return empty
    orb = ORB(
        n_keypoints=n_keypoints,
        fast_threshold=fast_threshold,
        n_scales=n_scales,
        downscale=downscale,
    )
    try:
        orb.detect_and_extract((img - lo) / (hi - lo))
    except RuntimeError:  # skimage: "ORB found no features"
        return empty
    return np.asarray(orb.descriptors, dtype=np.uint8)


def slice_descriptors(volume: np.ndarray, **orb_options: float) -> list[np.ndarray]:
    """:func:`orb_descriptors` of each ``z`` slice of a ``z, y, x`` volume (options as there)."""
    vol = np.asarray(volume)
    if vol.ndim == 2:
        vol = vol[None]
    return [orb_descriptors(s, **orb_options) for s in vol]


def descriptor_array(descriptors: Sequence[np.ndarray]) -> da.Array:
    """Stack per-image descriptors into a dask array for :func:`learn_codebook`.

    Parameters
    ----------
    descriptors
        ``(n_i, 256)`` arrays (empty ones are skipped).

    Returns
    -------
    dask.array.Array
        ``(Σ n_i, 256)`` ``float64``, one row-chunk per image, columns in one chunk.
    """
    parts = [
        da.from_array(np.asarray(d, dtype=np.float64), chunks=(max(len(d), 1), -1))
        for d in descriptors
        if len(d)
    ]
    if not parts:
        return da.zeros((0, N_BITS), dtype=np.float64, chunks=(1, -1))
    return da.concatenate(parts, axis=0)


def learn_codebook(
    descriptor_arrays: da.Array, *, n_words: int, random_state: int, max_iter: int = 300
) -> np.ndarray:
    """Visual words: ``dask_ml.cluster.KMeans`` centres of the stacked descriptors.

    Parameters
    ----------
    descriptor_arrays
        ``(n, n_bits)`` dask (or numpy) array, e.g. from :func:`descriptor_array`;
        rechunked to a single column block as dask-ml requires.
    n_words
        Codebook size (number of clusters); at most the number of descriptors.
    random_state
        Seed of the k-means|| initialisation: the same seed gives the same codebook.
    max_iter
        Lloyd iterations.

    Returns
    -------
    numpy.ndarray
        ``(n_words, n_bits)`` ``float64`` centres.  This is an eager, training-time
        step (the codebook is a small model, needed in memory to assign words).
    """
    from dask_ml.cluster import KMeans  # heavy import, only for training

    x = descriptor_arrays
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x, dtype=np.float64))
    if x.ndim != 2:
        raise ConfigError(f"descriptors must be 2-D (n, n_bits), got shape {x.shape}")
    if np.isnan(x.shape[0]):
        x = x.compute_chunk_sizes()
    if n_words < 1 or n_words > x.shape[0]:
        raise ConfigError(f"n_words must be in 1..{x.shape[0]} (descriptors), got {n_words}")
    x = x.astype(np.float64).rechunk({1: -1})
    km = KMeans(n_clusters=n_words, random_state=random_state, max_iter=max_iter)
    km.fit(x)
    return np.asarray(km.cluster_centers_, dtype=np.float64)


def assign_words(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook centre (Euclidean) for each descriptor row."""
    d = np.asarray(descriptors, dtype=np.float64)
    c = np.asarray(codebook, dtype=np.float64)
    if d.size == 0:
        return np.zeros(0, dtype=np.int64)
    if d.ndim != 2 or c.ndim != 2 or d.shape[1] != c.shape[1]:
        raise ConfigError(f"descriptors {d.shape} and codebook {c.shape} do not match")
    # exact squared distances (no |a|² - 2ab + |b|² cancellation), in row blocks
    out = np.empty(len(d), dtype=np.int64)
    step = max(1, 2**22 // max(c.size, 1))
    for s in range(0, len(d), step):
        diff = d[s : s + step, None, :] - c[None, :, :]
        out[s : s + step] = np.argmin(np.einsum("ijk,ijk->ij", diff, diff), axis=1)
    return out


def bovw_histogram(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Normalised bag-of-visual-words histogram of one image's descriptors.

    Parameters
    ----------
    descriptors
        ``(n, n_bits)`` descriptors of one image (or slice).
    codebook
        ``(n_words, n_bits)`` centres from :func:`learn_codebook`.

    Returns
    -------
    numpy.ndarray
        ``(n_words,)`` ``float64`` word frequencies summing to 1; all NaN when the image
        has no descriptor (no keypoint: the histogram is undefined, not zero).
    """
    c = np.asarray(codebook)
    words = assign_words(descriptors, c)
    if words.size == 0:
        return np.full(len(c), np.nan)
    counts = np.bincount(words, minlength=len(c)).astype(np.float64)
    return counts / counts.sum()
