"""Ingest benchmark: medpipe on a 2-worker cluster vs a single-process baseline.

Prints, for the IBSI sarcoma archive (../shared/data/dicom/ibsi_sts):

* baseline: one process, pydicom read + decode, sort by position, stack, rescale,
  zarr write (one chunk per slice) - no hashing, probing, masks or pyramid;
* medpipe (library on a LocalCluster of N single-threaded worker processes): the same
  probe -> plan -> batch -> read -> write steps the flow runs, without Prefect;
* medpipe (the Prefect flow, embedded server), for the orchestration overhead;
* the decode limit: one process that only reads, decodes and rescales each file and
  writes each series in one zarr call (no sort, hash, probe or metadata), its decode and
  write halves timed apart, in files/s per core times the cluster's worker count - what
  ingest could reach if it did nothing else;

each as files/s and MB/s, medians over ``--repeat`` runs after one untimed warm-up run of
each (the flow excepted: its start-up is what it measures), and the speed-up ratios; the
library's share of the limit is printed on its own line (issue target >= 0.7x). The same
rows are printed for the archive's CT series alone (512x512 slices, where per-file cost
matters least), a copy made in the scratch folder.
With ``--dicomweb`` (root or sudo, for ``make orthanc``), the same archive uploaded to a
local Orthanc: ingest over DICOMweb (QIDO-RS listing, WADO-RS per series) against the
folder ingest of the same files, both in one process, and the no-change relisting.
Then the cost of a no-change rescan of a synthetic tree of ``--files`` small files
(stat-only scan + catalog diff) in files/s.

``--quick`` checks that the script runs: the DICOMweb rows only, once, on the archive's
first patient folder (its figures are not a measurement).

Usage: ``.venv/bin/python bench/ingest.py [--repeat 3] [--workers 2] [--files 100000]
[--dicomweb] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pydicom

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
SECRET = b"bench-secret"


def _rescaled(ds: pydicom.Dataset) -> np.ndarray:
    """A slice's decoded pixels in modality units (slope and intercept applied)."""
    slope = float(getattr(ds, "RescaleSlope", 1))
    return ds.pixel_array * slope + float(getattr(ds, "RescaleIntercept", 0))


def baseline(archive: Path, out: Path) -> None:
    """Single process: read, decode, sort, stack, rescale, write each series to zarr."""
    import pydicom
    import zarr

    root = zarr.open_group(str(out), mode="w")
    for k, folder in enumerate(sorted(archive.glob("*/*/image"))):
        slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
        normal = np.cross(*np.reshape(slices[0].ImageOrientationPatient, (2, 3)))
        slices.sort(key=lambda ds: float(np.dot(normal, ds.ImagePositionPatient)))
        vol = np.stack([_rescaled(ds) for ds in slices])
        arr = root.create_array(
            str(k), shape=vol.shape, dtype=vol.dtype, chunks=(1, *vol.shape[1:])
        )
        arr[...] = vol


def decode_limit(archive: Path, out: Path) -> tuple[float, float]:
    """One process: decode every file, then write each series in one call; (decode s, write s).

    Each half in its fastest form - pydicom read, decode and rescale per file; one
    ``arr[...] = volume`` per series (zarr writes its one-slice chunks concurrently) - with
    none of ingest's sorting, hashing, probing or metadata.
    """
    import pydicom
    import zarr

    root = zarr.open_group(str(out), mode="w")
    decode = write = 0.0
    for k, folder in enumerate(sorted(archive.glob("*/*/image"))):
        t0 = time.perf_counter()
        vol = np.stack([_rescaled(pydicom.dcmread(p)) for p in sorted(folder.iterdir())])
        t1 = time.perf_counter()
        chunks = (1, *vol.shape[1:])
        arr = root.create_array(str(k), shape=vol.shape, dtype=vol.dtype, chunks=chunks)
        arr[...] = vol
        decode, write = decode + t1 - t0, write + time.perf_counter() - t1
    return decode, write


def medpipe_cluster(archive: Path, out: Path, client) -> None:
    """The flow's steps, mapped over the cluster's workers directly (no Prefect)."""
    from medpipe import catalog, ingest

    files = catalog.scan(archive)
    run_id = catalog.new_run_id()
    chunks = [files[i : i + 256] for i in range(0, len(files), 256)]
    probed = [
        r
        for rows in client.gather(
            client.map(
                ingest.probe_batch, [str(archive)] * len(chunks), chunks, secret=SECRET, pure=False
            )
        )
        for r in rows
    ]
    plans = ingest.plan(probed, catalog.current(str(out)))
    nthreads = sum(client.nthreads().values())
    batches = ingest.batches(plans, n=4 * nthreads)
    rows = client.gather(
        client.map(
            ingest.ingest_batch,
            [str(archive)] * len(batches),
            [str(out)] * len(batches),
            batches,
            secret=SECRET,
            run_id=run_id,
            pure=False,
        )
    )
    catalog.append(str(out), [r for b in rows for r in b], run_id=run_id)


def medpipe_flow(archive: Path, out: Path, workers: int) -> None:
    from flows.ingest import IngestParams, ingest_flow

    ingest_flow(IngestParams(archive=str(archive), store=str(out), cluster=f"local:{workers}"))


def dicomweb_rows(archive: Path, tmp: Path, repeat: int) -> None:
    """Files/s of a DICOMweb ingest from Orthanc vs the folder ingest of the same files."""
    import socket
    import subprocess
    from functools import partial

    import requests

    from medpipe.ingest import ingest_archive

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [f"ORTHANC_PORT={port}", f"ORTHANC_DIR={tmp / 'orthanc'}"]
    subprocess.run(["make", "-s", "orthanc", *args], cwd=REPO, check=True)
    try:
        files = sorted(archive.rglob("*.dcm"))
        for f in files:
            requests.post(f"http://127.0.0.1:{port}/instances", data=f.read_bytes(),
                          timeout=60).raise_for_status()
        url = f"dicomweb+http://127.0.0.1:{port}/dicom-web"
        folder, web, relist = [], [], []
        for r in range(repeat):
            run = partial(ingest_archive, secret=SECRET)
            folder.append(timed(run, str(archive), str(tmp / f"df{r}")))
            web.append(timed(run, url, str(tmp / f"dw{r}")))
            relist.append(timed(run, url, str(tmp / f"dw{r}")))
        n = len(files)
        base = statistics.median(folder)
        for label, t in (("folder (1 process)", base),
                         ("DICOMweb from Orthanc (1 process)", statistics.median(web))):
            print(f"{label:<34}{t:>10.2f}{n / t:>10.0f}{'':>8}{base / t:>9.2f}x")
        t = statistics.median(relist)
        print(f"DICOMweb no-change relisting: {t:.2f} s for {n} instances ({n / t:,.0f}/s)")
    finally:
        subprocess.run(["make", "-s", "orthanc-stop", *args], cwd=REPO, check=False)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def rescan(n_files: int, tmp: Path) -> tuple[float, int]:
    """Seconds for a no-change rescan (scan + diff) of ``n_files`` tiny files."""
    from medpipe import catalog

    archive = tmp / "many"
    for i in range(n_files):
        d = archive / f"{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        (d / f"{i:06d}.dcm").write_bytes(b"x" * 16)
    out = str(tmp / "many.zarr")
    files = catalog.scan(archive)
    catalog.append(out, [{**vars(f), "status": "ingested"} for f in files], run_id="seed")
    t0 = time.perf_counter()
    delta = catalog.diff(catalog.scan(archive), catalog.current(out))
    elapsed = time.perf_counter() - t0
    assert not delta.todo and delta.unchanged == n_files
    return elapsed, n_files


def compare(archive: Path, tmp: Path, args: argparse.Namespace, *, flow: bool) -> None:
    """Print the baseline, library, flow and decode-limit rows for one archive."""
    from distributed import Client, LocalCluster

    from medpipe.cluster import local_cluster_kwargs

    dcm = list(archive.rglob("*.dcm"))
    n, mb = len(dcm), sum(p.stat().st_size for p in dcm) / 1e6
    print(
        f"\narchive: {archive} ({n} files, {mb:.1f} MB); {args.repeat} repeats, "
        f"{args.workers} workers, {os.cpu_count()} cores"
    )
    runs = ("baseline", "decode", "write", "limit", "medpipe", "flow")
    times: dict[str, list[float]] = {name: [] for name in runs}
    with LocalCluster(**local_cluster_kwargs(args.workers)) as cluster, Client(cluster) as client:
        print(f"dask dashboard: {client.dashboard_link}")
        # one untimed run of each side first: the workers import medpipe, pydicom and
        # zarr on their first task, which is start-up, not ingest
        baseline(archive, tmp / "warm-b")
        decode_limit(archive, tmp / "warm-d")
        medpipe_cluster(archive, tmp / "warm-m", client)
        for r in range(args.repeat):
            times["baseline"].append(timed(baseline, archive, tmp / f"b{r}"))
            decode, write = decode_limit(archive, tmp / f"d{r}")
            times["decode"].append(decode)
            times["write"].append(write)
            times["limit"].append(decode + write)
            times["medpipe"].append(timed(medpipe_cluster, archive, tmp / f"m{r}", client))
    if flow:
        for r in range(args.repeat):
            times["flow"].append(timed(medpipe_flow, archive, tmp / f"f{r}", args.workers))
    med = {name: statistics.median(t) for name, t in times.items() if t}
    rows = [
        ("baseline (1 process)", med["baseline"]),
        ("  pydicom decode (1 process)", med["decode"]),
        ("  zarr write (1 process)", med["write"]),
        ("decode + write (1 process)", med["limit"]),
        (f"decode limit (x {args.workers} workers)", med["limit"] / args.workers),
        (f"medpipe library ({args.workers} workers)", med["medpipe"]),
    ]
    if "flow" in med:
        rows.append((f"medpipe flow ({args.workers} workers)", med["flow"]))
    print(f"{'run':<34}{'median s':>10}{'files/s':>10}{'MB/s':>8}{'speed-up':>10}")
    for label, t in rows:
        print(f"{label:<34}{t:>10.2f}{n / t:>10.0f}{mb / t:>8.1f}{med['baseline'] / t:>9.2f}x")
    limit = statistics.median(times["limit"]) / args.workers
    share = [limit / t for t in times["medpipe"]]
    print(
        f"medpipe library / decode limit: {statistics.median(share):.2f}x "
        f"(runs {', '.join(f'{x:.2f}' for x in share)}; target >= 0.7x)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect flow timing")
    ap.add_argument("--dicomweb", action="store_true",
                    help="add the DICOMweb rows (a local Orthanc via `make orthanc`)")
    ap.add_argument("--quick", action="store_true",
                    help="only the DICOMweb rows, once, on the first patient folder (smoke)")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MEDPIPE_SECRET", SECRET.decode())
    archive = DATA / "dicom" / "ibsi_sts"
    tmp = Path(tempfile.mkdtemp(prefix="medpipe-bench-"))
    try:
        if args.quick:
            if not archive.is_dir():
                print(f"IBSI archive not found at {archive}: nothing to run")
                return 1
            first = sorted(p for p in archive.iterdir() if p.is_dir())[0]
            subset = tmp / "quick-archive"
            shutil.copytree(first, subset / first.name)
            print(f"--quick: DICOMweb rows once on {len(list(subset.rglob('*.dcm')))} files")
            print(f"{'run':<34}{'median s':>10}{'files/s':>10}{'':>8}{'ratio':>10}")
            dicomweb_rows(subset, tmp, 1)
            return 0
        if not archive.is_dir():
            print(f"IBSI archive not found at {archive}: skipping the ingest comparison")
        else:
            ct = tmp / "ct-archive"
            for folder in sorted(archive.glob("*/CT")):
                shutil.copytree(folder, ct / folder.parent.name / "CT")
            compare(archive, tmp / "all", args, flow=not args.no_flow)
            compare(ct, tmp / "ct", args, flow=False)
            if args.dicomweb:
                dicomweb_rows(archive, tmp, args.repeat)
        secs, count = rescan(args.files, tmp)
        print(f"no-change rescan of {count} files: {secs:.2f} s ({count / secs:,.0f} files/s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
