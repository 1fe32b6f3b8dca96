"""Shared test helpers: real CT volumes, a lazy-check scheduler and a chunking strategy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from hypothesis import strategies as st

DIMS3 = ("z", "y", "x")


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[None]:
    """Fail if Dask computes anything inside the block (like xarray's test helper)."""
    count = 0

    def scheduler(dsk: object, keys: object, **kwargs: object) -> object:
        nonlocal count
        count += 1
        if count > max_computes:
            raise RuntimeError(f"Too many computes: {count} > {max_computes}")
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=scheduler):
        yield


@lru_cache(maxsize=1)
def pydicom_ct_volume() -> tuple[np.ndarray, tuple[float, float, float]]:
    """A real CT slice shipped by pydicom (CT_small.dcm, 128×128, HU), stacked into 3D.

    The slices are the original and flipped/shifted copies, so neighbouring slices differ
    like real anatomy does and every axis has structure.
    """
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)
    slices = [
        hu,
        hu[::-1],
        hu[:, ::-1],
        np.roll(hu, 7, axis=0),
        hu.T,
        np.roll(hu, -5, axis=1),
        hu[::-1, ::-1],
        hu,
    ]
    vol = np.stack(slices)[:, 20:84, 30:94]  # 8 × 64 × 64
    dy, dx = (float(v) for v in ds.PixelSpacing)
    return np.ascontiguousarray(vol), (float(ds.SliceThickness), dy, dx)


@lru_cache(maxsize=1)
def sts_ct_crop(root: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 24×64×64 crop (z, y, x) of patient STS_002's real CT from the shared data."""
    import nibabel as nib

    img = nib.load(Path(root) / "nifti" / "ibsi_sts" / "STS_002" / "CT_image.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)  # (x, y, z)
    zooms = [float(z) for z in img.header.get_zooms()]
    vol = np.transpose(data, (2, 1, 0))[12:36, 40:104, 50:114]
    return np.ascontiguousarray(vol), (zooms[2], zooms[1], zooms[0])


def as_image(arr: np.ndarray, spacing: tuple[float, ...], chunks: object) -> xr.DataArray:
    dims = DIMS3[-arr.ndim :]
    return xr.DataArray(
        da.from_array(arr, chunks=chunks),
        dims=dims,
        attrs={"spacing": list(spacing), "origin": [1.0, -2.0, 3.5][-arr.ndim :], "modality": "CT"},
    )


@st.composite
def chunkings(draw: st.DrawFn, shape: tuple[int, ...], max_cuts: int = 5) -> tuple:
    """Uneven per-axis chunk tuples summing to ``shape`` (chunks down to 1 voxel)."""
    out = []
    for n in shape:
        k = draw(st.integers(0, min(n - 1, max_cuts)))
        cuts = draw(st.lists(st.integers(1, n - 1), min_size=k, max_size=k, unique=True))
        edges = [0, *sorted(cuts), n]
        out.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True)))
    return tuple(out)
