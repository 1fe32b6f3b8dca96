"""GLRLM run counting against a brute-force walk along each direction."""

from __future__ import annotations

import numpy as np

from medpipe.features.glcm import DIRECTIONS_2D, DIRECTIONS_3D
from medpipe.features.glrlm import glrlm_matrices


def _brute_force(levels: np.ndarray, offset: tuple[int, int, int], ng: int) -> np.ndarray:
    shape = levels.shape
    nr = max(shape)
    out = np.zeros((ng, nr))

    def inside(p: tuple[int, ...]) -> bool:
        return all(0 <= c < n for c, n in zip(p, shape, strict=True))

    for p in np.ndindex(shape):
        g = levels[p]
        if g == 0:
            continue
        prev = tuple(c - o for c, o in zip(p, offset, strict=True))
        if inside(prev) and levels[prev] == g:
            continue  # not a run start
        n, q = 0, p
        while inside(q) and levels[q] == g:
            n += 1
            q = tuple(c + o for c, o in zip(q, offset, strict=True))
        out[g - 1, n - 1] += 1
    return out


def test_glrlm_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    lv = rng.integers(1, 4, size=(4, 6, 7)).astype(np.int32)
    lv[rng.random(lv.shape) < 0.2] = 0  # holes in the ROI break runs
    m3 = glrlm_matrices(lv, DIRECTIONS_3D, n_levels=3)
    for k, o in enumerate(DIRECTIONS_3D):
        np.testing.assert_array_equal(m3[k], _brute_force(lv, o, 3), err_msg=str(o))
    m2 = glrlm_matrices(lv, DIRECTIONS_2D, n_levels=3, per_slice=True)
    for z in range(lv.shape[0]):
        one = np.zeros_like(lv)
        one[z] = lv[z]
        for k, o in enumerate(DIRECTIONS_2D):
            np.testing.assert_array_equal(m2[z, k], _brute_force(one, o, 3))
    # every ROI voxel lies in exactly one run per direction
    n_roi = int((lv > 0).sum())
    j = np.arange(1, m3.shape[-1] + 1)
    np.testing.assert_array_equal((m3 * j).sum(axis=(1, 2)), n_roi)


def test_glrlm_long_runs_and_single_voxel_runs() -> None:
    """Runs as long as the array (a constant block) next to runs of one voxel (noise)."""
    rng = np.random.default_rng(11)
    lv = np.ones((3, 5, 9), dtype=np.int32)  # runs of every length up to 9
    lv[:, 3:] = rng.integers(1, 6, size=(3, 2, 9))  # mostly length-1 runs
    lv[1, 1, 4] = 0  # a hole splits runs in every direction through it
    m3 = glrlm_matrices(lv, DIRECTIONS_3D, n_levels=5)
    for k, o in enumerate(DIRECTIONS_3D):
        np.testing.assert_array_equal(m3[k], _brute_force(lv, o, 5), err_msg=str(o))
    assert m3[DIRECTIONS_3D.index((0, 0, 1)), 0, 8] > 0  # full-length runs along x
    m2 = glrlm_matrices(lv, DIRECTIONS_2D, n_levels=5, per_slice=True)
    for z in range(lv.shape[0]):
        one = np.zeros_like(lv)
        one[z] = lv[z]
        for k, o in enumerate(DIRECTIONS_2D):
            np.testing.assert_array_equal(m2[z, k], _brute_force(one, o, 5))
