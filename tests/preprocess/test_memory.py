"""A filter chain over a volume 3× larger than a worker's memory runs without worker deaths."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from scipy import ndimage as ndi

import medpipe.preprocess as pp

SPACING = (2.0, 0.8, 0.8)
SHAPE = (288, 1024, 1024)  # float32: 1.21 GB = 3.02 × the 400 MB worker limit
CHUNKS = (24, 128, 256)  # 3 MB per block
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
    g = [int(4.0 * SIGMA_MM / s + 0.5) for s in SPACING]
    m = [n // 2 for n in pp.footprint(MEDIAN_MM, SPACING).shape]
    c = [2 * (n // 2) for n in pp.footprint(CLOSING_MM, SPACING).shape]
    return [a + b + d for a, b, d in zip(g, m, c, strict=True)]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xfail(
    run=False,
    reason="unfinished: workers still exceed 95% of memory_limit (nanny restarts) on this "
    "chain; see the preprocess helper's report",
)
def test_chain_larger_than_worker_memory(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    # 400 MB, not 300 MB: a worker that has imported dask.array (which here pulls in pandas,
    # pyarrow, xarray and sparse) sits at ~235 MB RSS before holding any data; at 300 MB it
    # is above the spill threshold (70%) from the start and pauses (80%) for good.  Default
    # spill/pause/terminate thresholds; the nanny kills a worker above 95% (380 MB).
    limit = 400e6
    assert np.prod(SHAPE) * 4 >= 3 * limit
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit="400MB",
            processes=True,
            dashboard_address=None,
            silence_logs=40,
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
        assert out.data.chunks == src.chunks

        target = zarr.create_array(
            store=str(tmp_path / "out.zarr"),
            shape=SHAPE,
            chunks=CHUNKS,
            dtype="float32",
            zarr_format=3,
        )
        da.to_zarr(out.data, target, compute=True)

        pids_after = client.run(os.getpid)
        assert pids_after == pids_before, "a worker was restarted (killed for memory?)"
        assert len(client.scheduler_info()["workers"]) == 2
        logs = "\n".join(str(v) for v in cluster.get_logs().values())
        assert "exceeded 95% memory budget" not in logs

        # Check sampled blocks against scipy on the block plus halo (true edges kept).
        result = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
        halo = _halo()
        offs = [np.cumsum((0, *c)) for c in src.chunks]
        for idx in [(0, 0, 0), (4, 1, 2), (len(src.chunks[0]) - 1, 3, 1)]:
            blk = [slice(int(o[i]), int(o[i + 1])) for o, i in zip(offs, idx, strict=True)]
            ext = [
                slice(max(0, s.start - h), min(n, s.stop + h))
                for s, h, n in zip(blk, halo, SHAPE, strict=True)
            ]
            region = src[tuple(ext)].compute()
            ref = _scipy_chain(region)
            crop = tuple(
                slice(s.start - e.start, s.stop - e.start) for s, e in zip(blk, ext, strict=True)
            )
            np.testing.assert_array_equal(result[tuple(blk)], ref[crop])
