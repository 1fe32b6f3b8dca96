"""A filter chain over a volume 3× larger than a worker's memory runs without worker deaths.

What bounds the memory, found while writing this test (dask/distributed 2026.8, zarr 3.1):

* Writing: ``da.to_zarr(x, zarr_array)`` rechunks ``x`` to ~128 MiB "auto" write chunks
  before storing, whatever the zarr chunks are; each write task then gathers 16+ filtered
  blocks and concatenates them (the ``rechunk-merge-store-map`` tasks), and the scheduler
  must keep all of them alive.  That alone took workers to ~780 MB.  ``da.store`` into a
  zarr array whose chunks equal the dask chunks (what :func:`medpipe.store.write_image`
  does) writes block by block.
* Streaming: a chain of ``map_overlap`` stages runs slab by slab along the slowest axis,
  keeping a few slabs of blocks (one per stage and neighbour) plus their halo slices alive.
  Memory therefore grows with the *plane* area × chunk depth, not with the volume: with
  1024² planes a slab of 8-voxel-deep chunks is 32 MB and workers sat at the pause
  threshold; with 512² planes (real CT) and 16-voxel chunks they stay well below it.
* Baseline: a worker that has imported ``dask.array`` (which here pulls in pandas, pyarrow,
  xarray, sparse) holds ~210–245 MB RSS before any data, and ~270 MB once it has run the
  chain (scipy, zarr, allocator), so a 300 MB limit would leave the worker above the
  default spill (70 %) and pause (80 %) thresholds while idle.  At 400 MB the chain
  completed without deaths (peak RSS ~310 MB) but kept crossing the spill threshold and
  pausing, and at 450 MB a run in CI once stalled with both workers paused near 350 MB;
  the limit here is 600 MB (pause at 480 MB) and the volume is > 3× the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage as ndi

import medpipe.preprocess as pp
from medpipe.store import open_image, write_image

SPACING = (2.0, 0.8, 0.8)
SHAPE = (1760, 512, 512)  # float32: 1.85 GB = 3.08 × the 600 MB worker limit
CHUNKS = (16, 256, 256)  # 4 MB per block; halos on every axis
LIMIT = 600e6
SIGMA_MM, MEDIAN_MM, CLOSING_MM = 1.0, 1.0, 1.6


def _chain(image: xr.DataArray) -> xr.DataArray:
    image = pp.gaussian(image, sigma_mm=SIGMA_MM)
    image = pp.median(image, radius_mm=MEDIAN_MM)
    return pp.closing(image, radius_mm=CLOSING_MM)


def _scipy_chain(x: np.ndarray) -> np.ndarray:
    x = ndi.gaussian_filter(x, [SIGMA_MM / s for s in SPACING])
    x = ndi.median_filter(x, footprint=pp.footprint(MEDIAN_MM, SPACING))
    return ndi.grey_closing(x, footprint=pp.footprint(CLOSING_MM, SPACING))


def _halo() -> list[int]:
    """Voxels of input each output voxel of the chain depends on, per axis."""
    g = [int(4.0 * SIGMA_MM / s + 0.5) for s in SPACING]
    m = [n // 2 for n in pp.footprint(MEDIAN_MM, SPACING).shape]
    c = [2 * (n // 2) for n in pp.footprint(CLOSING_MM, SPACING).shape]
    return [a + b + d for a, b, d in zip(g, m, c, strict=True)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chain_larger_than_worker_memory(tmp_path: Path) -> None:
    import dask
    from distributed import Client, LocalCluster

    assert np.prod(SHAPE) * 4 >= 3 * LIMIT
    # Default thresholds (spill 70 %, pause 80 %, nanny kills at 95 %), spelled out so the
    # test does not depend on a user's dask config; spilled data go to tmp_path.
    thresholds = {
        "distributed.worker.memory.target": 0.6,
        "distributed.worker.memory.spill": 0.7,
        "distributed.worker.memory.pause": 0.8,
        "distributed.worker.memory.terminate": 0.95,
    }
    with (
        dask.config.set(thresholds),
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=int(LIMIT), processes=True,
            dashboard_address=None, silence_logs=40, local_directory=str(tmp_path / "spill"),
        ) as cluster,
        Client(cluster) as client,
    ):
        pids_before = client.run(os.getpid)
        # Generated lazily, block by block, on the workers: never materialised here.
        src = da.random.default_rng(20240917).standard_normal(
            SHAPE, chunks=CHUNKS, dtype=np.float32
        ) * np.float32(200.0) + np.float32(40.0)
        image = xr.DataArray(src, dims=("z", "y", "x"), attrs={"spacing": list(SPACING)})
        out = _chain(image)
        assert out.data.chunks == src.chunks  # no rechunk anywhere, so no merge on write

        write_image(
            out.data, store=str(tmp_path / "out.zarr"), path="ct", axes=("z", "y", "x"),
            spacing=SPACING, chunks=CHUNKS, levels=1,
        )

        pids_after = client.run(os.getpid)
        assert pids_after == pids_before, "a worker was restarted (killed for memory?)"
        logs = "\n".join(str(v) for v in cluster.get_logs().values())
        assert "exceeded 95% memory budget" not in logs

        # Sampled blocks (corners, edges, interior) against scipy on block + halo, with the
        # true array edges kept so scipy's own boundary mode applies there.
        result = open_image(str(tmp_path / "out.zarr"), "ct").data
        assert result.shape == SHAPE and result.dtype == np.float32
        halo = _halo()
        offs = [np.cumsum((0, *c)) for c in src.chunks]
        last = [len(c) - 1 for c in src.chunks]
        for idx in [(0, 0, 0), (37, 1, 0), (40, 0, 1), (last[0], last[1], last[2])]:
            blk = [slice(int(o[i]), int(o[i + 1])) for o, i in zip(offs, idx, strict=True)]
            ext = [slice(max(0, s.start - h), min(n, s.stop + h))
                   for s, h, n in zip(blk, halo, SHAPE, strict=True)]
            ref = _scipy_chain(src[tuple(ext)].compute())
            crop = tuple(slice(s.start - e.start, s.stop - e.start)
                         for s, e in zip(blk, ext, strict=True))
            np.testing.assert_array_equal(result[tuple(blk)].compute(), ref[crop])
