"""Bag of visual words: a vocabulary of keypoint descriptors, fitted inside the model.

:class:`BagOfVisualWords` is the model-pipeline step of the ``sift`` and ``orb``
families (:mod:`medpipe.features.fitted` states the contract).  Their feature-table
columns hold each sample's descriptors (at most ``max_keypoints`` of them, zero-padded,
with the count in a column of its own); ``fit`` clusters the descriptors of the rows it
is given with :class:`sklearn.cluster.MiniBatchKMeans` — the cluster centres are the
visual words — and ``transform`` replaces the descriptor columns by each sample's
normalised word histogram.  Inside a pipeline, grid search and every CV fold refit the
vocabulary on their own training rows, and the saved model file holds it.

The codebook helpers of the earlier ORB code stay here (also importable from
:mod:`medpipe.features.keypoints`): :func:`descriptor_array` and :func:`learn_codebook`
(a ``dask_ml.cluster.KMeans`` codebook), :func:`assign_words` (nearest word, exact
Euclidean) and :func:`bovw_histogram`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils.validation import check_is_fitted

from medpipe.errors import ConfigError, ModelError

__all__ = [
    "BagOfVisualWords",
    "assign_words",
    "bovw_histogram",
    "descriptor_array",
    "learn_codebook",
]


def descriptor_array(descriptors: Sequence[np.ndarray], *, n_dims: int = 256) -> da.Array:
    """Stack per-image descriptors into a dask array for :func:`learn_codebook`.

    Parameters
    ----------
    descriptors
        ``(n_i, n_dims)`` arrays (empty ones are skipped).
    n_dims
        Descriptor length (256 ORB bits), for the shape of an empty result.

    Returns
    -------
    dask.array.Array
        ``(Σ n_i, n_dims)`` ``float64``, one row-chunk per image, columns in one chunk.
    """
    parts = [
        da.from_array(np.asarray(d, dtype=np.float64), chunks=(max(len(d), 1), -1))
        for d in descriptors
        if len(d)
    ]
    if not parts:
        return da.zeros((0, n_dims), dtype=np.float64, chunks=(1, -1))
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


class BagOfVisualWords(TransformerMixin, BaseEstimator):
    """Visual-word histograms of one keypoint family's descriptor columns.

    Parameters
    ----------
    n_words
        Vocabulary size (k-means clusters).
    random_state
        Seed of the k-means initialisation and mini-batches: the same rows and seed
        give the same vocabulary.
    count_column
        Index of the column holding each sample's number of descriptors.
    first_column
        Index of the first descriptor column; the ``max_keypoints * descriptor_size``
        descriptor columns follow it contiguously (descriptor ``i``'s values are
        columns ``first_column + i * descriptor_size`` onward).
    max_keypoints
        Descriptor slots per sample (the table's cap).
    descriptor_size
        Columns per descriptor.
    packed_bits
        The columns hold the bytes of a binary descriptor (ORB: 32 bytes for 256 bits,
        :func:`numpy.packbits` order); the words are learnt on the unpacked 0/1 bits.
    family
        The family name, for messages and output names (``<family>_word<k>``).
    batch_size, max_iter
        :class:`~sklearn.cluster.MiniBatchKMeans` settings.

    Attributes
    ----------
    cluster_centers_ : numpy.ndarray
        ``(n_words, n_dims)`` the vocabulary (``n_dims`` = bits when ``packed_bits``).
    n_descriptors_ : int
        Descriptors the vocabulary was learnt from.
    n_features_in_ : int
        Columns of the matrix it was fitted on.
    """

    def __init__(
        self,
        n_words: int = 32,
        random_state: int | None = 0,
        *,
        count_column: int = 0,
        first_column: int = 1,
        max_keypoints: int = 32,
        descriptor_size: int = 128,
        packed_bits: bool = False,
        family: str = "keypoints",
        batch_size: int = 1024,
        max_iter: int = 100,
    ) -> None:
        self.n_words = n_words
        self.random_state = random_state
        self.count_column = count_column
        self.first_column = first_column
        self.max_keypoints = max_keypoints
        self.descriptor_size = descriptor_size
        self.packed_bits = packed_bits
        self.family = family
        self.batch_size = batch_size
        self.max_iter = max_iter

    # ----------------------------------------------------------------- layout helpers

    def _block(self) -> slice:
        start = int(self.first_column)
        return slice(start, start + int(self.max_keypoints) * int(self.descriptor_size))

    def _check_width(self, x: Any) -> None:
        need = max(self._block().stop, int(self.count_column) + 1)
        if x.ndim != 2 or x.shape[1] < need:
            raise ModelError(
                f"{self.family} visual words: the input has shape {tuple(x.shape)}, but "
                f"its descriptor columns end at column {need}"
            )

    def descriptors(self, x: np.ndarray) -> list[np.ndarray]:
        """Each row's descriptors, ``(n_i, n_dims)`` float64 (bits unpacked)."""
        x = np.asarray(x, dtype=np.float64)
        self._check_width(x)
        k, d = int(self.max_keypoints), int(self.descriptor_size)
        counts = np.clip(np.rint(x[:, int(self.count_column)]), 0, k).astype(int)
        block = x[:, self._block()].reshape(len(x), k, d)
        out = []
        for row, n in zip(block, counts, strict=True):
            v = row[:n]
            if self.packed_bits:
                v = np.unpackbits(np.clip(np.rint(v), 0, 255).astype(np.uint8), axis=1)
            out.append(np.asarray(v, dtype=np.float64))
        return out

    def _kmeans(self) -> MiniBatchKMeans:
        return MiniBatchKMeans(
            n_clusters=int(self.n_words), random_state=self.random_state,
            batch_size=int(self.batch_size), max_iter=int(self.max_iter), n_init=3,
        )

    # ----------------------------------------------------------------------- sklearn API

    def fit(self, X: Any, y: Any = None) -> BagOfVisualWords:  # noqa: N803 - sklearn API
        """Learn the vocabulary from the descriptors of the rows of ``X``.

        A Dask array is read block by block (``MiniBatchKMeans.partial_fit``), so the
        descriptors of a large table never need to fit in memory at once.

        Raises
        ------
        ModelError
            Fewer descriptors than ``n_words`` in the rows (no keypoints found).
        """
        if int(self.n_words) < 1:
            raise ModelError(f"{self.family} visual words: n_words must be >= 1")
        if isinstance(X, da.Array):
            return self._fit_blocks(X)
        x = np.asarray(X, dtype=np.float64)
        parts = self.descriptors(x)
        stacked = np.concatenate(parts) if parts else np.zeros((0, 1))
        self._check_count(len(stacked), len(x))
        km = self._kmeans().fit(stacked)
        self.cluster_centers_ = np.asarray(km.cluster_centers_, dtype=np.float64)
        self.n_descriptors_ = int(len(stacked))
        self.n_features_in_ = int(x.shape[1])
        return self

    def _check_count(self, n: int, rows: int) -> None:
        if n < int(self.n_words):
            raise ModelError(
                f"{self.family} visual words: the {rows} training rows have {n} "
                f"descriptors, fewer than the {self.n_words} words to learn (the detector "
                "found too few keypoints in these images)"
            )

    def _fit_blocks(self, x: da.Array) -> BagOfVisualWords:
        self._check_width(x)
        x = x.rechunk({1: -1})
        km, pending, total = self._kmeans(), [], 0
        need = max(int(self.n_words), int(self.batch_size))
        for block in x.to_delayed().ravel():
            pending += self.descriptors(np.asarray(block.compute()))
            ready = sum(len(p) for p in pending)
            if ready >= need:
                km.partial_fit(np.concatenate(pending))
                total, pending = total + ready, []
        rest = sum(len(p) for p in pending)
        if rest and (total or rest >= int(self.n_words)):
            km.partial_fit(np.concatenate(pending))
            total += rest
        self._check_count(total, int(x.shape[0]))
        self.cluster_centers_ = np.asarray(km.cluster_centers_, dtype=np.float64)
        self.n_descriptors_ = int(total)
        self.n_features_in_ = int(x.shape[1])
        return self

    def histograms(self, X: Any) -> np.ndarray:  # noqa: N803 - sklearn API
        """``(n, n_words)`` word frequencies of each row (all zero without descriptors)."""
        check_is_fitted(self, "cluster_centers_")
        centres = self.cluster_centers_
        out = np.zeros((len(X), len(centres)))
        for i, d in enumerate(self.descriptors(X)):
            if len(d):  # no keypoint: zeros here (bovw_histogram's NaN would stop the fit)
                out[i] = bovw_histogram(d, centres)
        return out

    def _transform_block(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] != self.n_features_in_:
            raise ModelError(
                f"{self.family} visual words: fitted on {self.n_features_in_} columns, "
                f"given {x.shape[1]}"
            )
        block = self._block()
        rest = np.concatenate([x[:, : block.start], x[:, block.stop :]], axis=1)
        return np.concatenate([rest, self.histograms(x)], axis=1)

    def transform(self, X: Any) -> Any:  # noqa: N803 - sklearn API
        """The other columns unchanged, then the ``n_words`` histogram columns.

        The count column is kept (the number of keypoints is a feature too).  A Dask
        array gives a Dask array, transformed block by block.
        """
        check_is_fitted(self, "cluster_centers_")
        if isinstance(X, da.Array):
            x = X.rechunk({1: -1})
            width = self.n_features_in_ - (self._block().stop - self._block().start)
            return x.map_blocks(
                self._transform_block, chunks=(x.chunks[0], (width + len(self.cluster_centers_),)),
                dtype=np.float64,
            )
        return self._transform_block(X)

    def feature_names_out(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """Output column names for input ``names`` (before fitting: ``n_words`` words)."""
        block = self._block()
        rest = [*names[: block.start], *names[block.stop :]]
        return [*rest, *(f"{self.family}_word{k:03d}" for k in range(int(self.n_words)))]
