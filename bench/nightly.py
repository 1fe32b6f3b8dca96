"""Nightly benchmark: the nightly flow twice on the IBSI archive, the second time unchanged.

Prints both wall times and the ratio (target: the no-change rerun costs <= 5% of the
first run).  Usage: ``.venv/bin/python bench/nightly.py [--workers 2] [--repeat 3]``.
The first run of each repeat starts from an empty store; reruns are timed after it.
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

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("MEDPIPE_SECRET", "bench-secret")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    archive = DATA / "dicom" / "ibsi_sts"
    if not archive.is_dir():
        print(f"IBSI archive not found at {archive}; nothing to measure")
        return 0
    from flows.nightly import NightlyParams, nightly_flow

    firsts, reruns = [], []
    for _ in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="medpipe-nightly-"))
        try:
            store = str(tmp / "store.zarr")
            for times in (firsts, reruns):
                t0 = time.perf_counter()
                out = nightly_flow(NightlyParams(archive=str(archive), store=store,
                                                 cluster=f"local:{args.workers}"))
                times.append(time.perf_counter() - t0)
                print(f"  run: {times[-1]:.1f} s  stages "
                      + ", ".join(f"{k} {v:.1f}s" for k, v in out.stages.items()))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    first, rerun = statistics.median(firsts), statistics.median(reruns)
    print(f"first run (empty store):   {first:7.1f} s")
    print(f"no-change rerun:           {rerun:7.1f} s")
    print(f"rerun / first:             {rerun / first:7.1%}  (target <= 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
