"""Streaming ingest: a series larger than a worker's memory is written slab by slab.

A real CT series is made large: its slices are tiled in-plane and replicated along z,
each copy a new SOP instance (fresh SOPInstanceUID, its own ImagePositionPatient) in
one new series.  The IBSI sarcoma CT made larger than 2 GB is ingested on a
``LocalCluster`` whose worker may use less than a third of that; no worker may be
restarted and every slab must equal the replicated frames decoded by pydicom.  The same
on pydicom's bundled CT, smaller, runs everywhere: its peak traced allocation must stay
under a third of the series, and its store must equal the in-memory path's.
"""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medpipe import catalog, ingest
from medpipe.io.dicom import slabs
from medpipe.store import layout, open_image

SECRET = b"streaming-test-secret"
IBSI_CT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dicom" / "ibsi_sts"
IBSI_CT = Path("/work/shared/data/dicom/ibsi_sts") if not IBSI_CT.exists() else IBSI_CT
_UID_MARK = "99999999"
_Z_MARK = "-99999.125"


@dataclass
class BigSeries:
    """A generated archive of one large series and how to rebuild its planes."""

    archive: Path
    sources: list[np.ndarray]  # decoded (rescaled) source planes, tiled
    n: int
    nbytes: int  # pixel bytes in the files

    def plane(self, z: int) -> np.ndarray:
        return self.sources[z % len(self.sources)]


def make_big_series(src: list[Path], out: Path, *, n: int, tile: tuple[int, int]) -> BigSeries:
    """Replicate ``src`` (one series' slices) ``n`` times over, tiled in-plane by ``tile``.

    Each source slice is serialised once with placeholder UID and position strings of
    fixed width, which each copy replaces; the copies are 2 mm apart in z.
    """
    out.mkdir(parents=True)
    prefix = f"2.25.{pydicom.uid.generate_uid(prefix=None)[5:20]}"
    series_uid = pydicom.uid.generate_uid()
    templates, planes = [], []
    src = sorted(src, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for path in src:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        arr = np.tile(stored, tile)
        slope, inter = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        if (slope, inter) == (1.0, 0.0):
            planes.append(arr)
        else:
            planes.append((arr.astype(np.float64) * slope + inter).astype(np.float32))
        ds.Rows, ds.Columns = arr.shape
        ds.PixelData = arr.astype(stored.dtype).tobytes()
        ds.SeriesInstanceUID = series_uid
        uid = prefix + _UID_MARK
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        x, y = (str(v) for v in ds.ImagePositionPatient[:2])
        ds.ImagePositionPatient = [x, y, _Z_MARK]
        for kw in ("SliceLocation", "InstanceNumber", "SpacingBetweenSlices"):
            if kw in ds:
                delattr(ds, kw)
        ds.SliceThickness = "2"
        tmp = out / "template.dcm"
        ds.save_as(tmp, enforce_file_format=True)
        templates.append(tmp.read_bytes())
        tmp.unlink()
    for i in range(n):
        t = templates[i % len(templates)]
        data = t.replace(_UID_MARK.encode(), f"{i:08d}".encode()).replace(
            _Z_MARK.encode(), f"{2.0 * i:+010.3f}".encode()
        )
        (out / f"s{i:05d}.dcm").write_bytes(data)
    return BigSeries(out, planes, n, n * planes[0].size * 2)


def _check_voxels(store: str, big: BigSeries) -> None:
    """The stored series, slab by slab (its z-chunks), equals the replicated planes."""
    img = open_image(store, layout.image(_only_key(store)))
    assert img.shape == (big.n, *big.sources[0].shape)
    zc = img.data.chunksize[0]
    for z0 in range(0, big.n, zc):
        got = img.data[z0 : z0 + zc].compute(scheduler="synchronous")
        want = np.stack([big.plane(z) for z in range(z0, min(big.n, z0 + zc))])
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"planes {z0}..")


def _only_key(store: str) -> str:
    rows = catalog.current(store)
    keys = set(rows.loc[rows["status"] == "ingested", "series"])
    assert len(keys) == 1, rows["status"].value_counts().to_dict()
    return keys.pop()


@pytest.fixture(scope="module")
def ibsi_big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigSeries]:
    ct = sorted(IBSI_CT.glob("STS_*/CT/image"))
    if not ct:
        pytest.skip(f"the IBSI sarcoma CT is not staged at {IBSI_CT} (../shared/data)")
    root = tmp_path_factory.mktemp("ibsi-big")
    # 143x161 slices tiled 4x4: 0.74 MB planes; 2,850 of them are just over 2 GB.
    big = make_big_series(sorted(ct[0].glob("*.dcm")), root / "archive", n=2850, tile=(4, 4))
    assert big.nbytes > 2 * 10**9
    yield big
    shutil.rmtree(root, ignore_errors=True)


def test_ibsi_ct_over_2gb_streams_on_a_worker_under_a_third(ibsi_big: BigSeries, tmp_path: Path):
    from distributed import Client, LocalCluster

    limit = ibsi_big.nbytes // 3 - (20 << 20)
    store = str(tmp_path / "store.zarr")
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit=limit, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        before = set(client.scheduler_info()["workers"])
        summary = ingest.ingest_archive(
            str(ibsi_big.archive), store, secret=SECRET, client=client, timeout_s=300
        )
        after = set(client.scheduler_info()["workers"])
        removed = [e for _, e in cluster.scheduler.get_events("all") if _removal(e)]
    assert after == before, "a worker was restarted (its address changed)"
    assert not removed, removed
    assert summary.quarantined == 0
    try:
        _check_voxels(store, ibsi_big)
    finally:
        shutil.rmtree(store, ignore_errors=True)


def _removal(event: object) -> bool:
    return isinstance(event, dict) and event.get("action") in ("remove-worker", "worker-restart")


@pytest.fixture(scope="module")
def bundled_big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigSeries]:
    root = tmp_path_factory.mktemp("ct-small-big")
    src = [Path(get_testdata_file("CT_small.dcm"))]
    # 128x128 tiled 2x2: 128 kB planes (float32 after the rescale: 8 planes a chunk).
    big = make_big_series(src, root / "archive", n=500, tile=(2, 2))
    assert big.nbytes > slabs.STREAM_MIN_BYTES
    yield big
    shutil.rmtree(root, ignore_errors=True)


def test_bundled_ct_streams_with_a_third_of_its_size(bundled_big: BigSeries, tmp_path: Path):
    store = str(tmp_path / "store.zarr")
    tracemalloc.start()
    try:
        summary = ingest.ingest_archive(str(bundled_big.archive), store, secret=SECRET)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.quarantined == 0
    decoded = bundled_big.n * bundled_big.sources[0].nbytes  # float32 voxels
    assert peak < bundled_big.nbytes / 3, (peak, bundled_big.nbytes, decoded)
    _check_voxels(store, bundled_big)


def test_streamed_store_equals_the_in_memory_one(
    bundled_big: BigSeries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    streamed = str(tmp_path / "streamed.zarr")
    ingest.ingest_archive(str(bundled_big.archive), streamed, secret=SECRET, run_id="r1")
    monkeypatch.setattr(slabs, "STREAM_MIN_BYTES", 1 << 62)
    monkeypatch.setattr("medpipe.io.dicom.series.STREAM_MIN_BYTES", 1 << 62)
    in_memory = str(tmp_path / "memory.zarr")
    ingest.ingest_archive(str(bundled_big.archive), in_memory, secret=SECRET, run_id="r1")
    key = _only_key(streamed)
    assert _only_key(in_memory) == key
    a, b = open_image(streamed, layout.image(key)), open_image(in_memory, layout.image(key))
    skip = {"written_at"}
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {
        k: v for k, v in b.attrs.items() if k not in skip
    }
    for level in range(a.attrs["levels"] if isinstance(a.attrs["levels"], int) else 1):
        la = open_image(streamed, layout.image(key), level=level)
        lb = open_image(in_memory, layout.image(key), level=level)
        assert la.data.chunksize == lb.data.chunksize
        np.testing.assert_array_equal(la.values, lb.values)
