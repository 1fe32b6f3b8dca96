"""Scale benchmark: a night's cost against the archive's size (issue 13).

For each archive size N it builds an archive of N series by re-identifying real files
(copies of pydicom's CT and MR slices and, where staged, the IBSI sarcoma CT slices;
each copy gets fresh Study/Series/SOP Instance UIDs and fake PHI), then runs the nightly
flow three nights on one store:

1. the first night (everything new);
2. a no-change night;
3. a night with 1 % new series and 0.1 % changed files (one pixel changed).

It prints each night's wall time and bytes written, per stage, and the ratios against
the first night.  Flow and cluster start-up (the night's wall time not spent inside a
stage) is printed separately as ``overhead``.  Bytes written per stage are the store
files that are new or changed after the night (counted in full), by top-level group:
``catalog``/``images`` → ingest, ``preprocessed`` → preprocess, ``features`` →
features, ``models``/``scores``/``labels`` → model, ``reports`` → report (the QA
report), the rest (locks, the root's metadata) → other.

Usage: ``.venv/bin/python bench/scale.py [--sizes 1000 10000] [--large] [--quick]
[--cluster local] [--keep DIR]``.  ``--large`` adds N = 100,000; ``--quick`` runs N = 50
only (a smoke run: its output is not a figure).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
#: The identifying attributes every copy gets fresh (fake) values for.
PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "OtherPatientIDs",
    "InstitutionAddress",
    "StationName",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
)
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
STAGE_OF_GROUP = {
    "catalog": "ingest",
    "images": "ingest",
    "outputs": "ingest",
    "preprocessed": "preprocess",
    "features": "features",
    "models": "model",
    "scores": "model",
    "labels": "model",
    "reports": "report",
}


def source_files(data: Path = DATA, *, ibsi_slices: int = 4) -> list[Path]:
    """The real files copies are made of: pydicom's CT and MR, a few IBSI CT slices."""
    from pydicom.data import get_testdata_file

    out = [Path(get_testdata_file("CT_small.dcm")), Path(get_testdata_file("MR_small.dcm"))]
    for folder in sorted((data / "dicom" / "ibsi_sts").glob("STS_*/CT/image")):
        out += sorted(folder.glob("*.dcm"))[:ibsi_slices]
    return out


def _fake_phi(i: int) -> dict[str, str]:
    # no word of these occurs in what medpipe writes ("scale" does: NGFF's transformation
    # type), so the nightly PHI audit finds none of them
    return {
        "PatientName": f"QUOKKA^PATIENT^{i:06d}",
        "PatientID": f"SC{i:08d}",
        "PatientBirthDate": f"19{(i % 80) + 10:02d}0101",
        "AccessionNumber": f"ACC{i:09d}",
        "InstitutionName": "QUOKKA BENCH HOSPITAL",
        "ReferringPhysicianName": "BENCH^REFERRER",
        "StudyID": f"ST{i:06d}",
        "StudyDescription": "QUOKKA BENCH STUDY",
        "SeriesDescription": f"QUOKKA BENCH SERIES {i}",
    }


@dataclass
class Archive:
    """A generated archive: its root and each series' file."""

    root: Path
    files: list[Path]


def make_series(src: Path, out: Path, i: int, *, seed: int = 0) -> Path:
    """One re-identified copy of ``src``: series ``i`` with fresh UIDs and fake PHI."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    for kw in PHI_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    for kw, value in _fake_phi(i).items():
        setattr(ds, kw, value)
    entropy = f"scale-{seed}-{i}"
    for kw in _UID_KEYWORDS:
        setattr(ds, kw, generate_uid(entropy_srcs=[entropy, kw]))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.remove_private_tags()
    ds.preamble = b"\0" * 128  # the source's preamble may carry anything
    path = out / f"p{i // 1000:04d}" / f"s{i:07d}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def generate_archive(
    out: Path, n: int, *, start: int = 0, sources: Sequence[Path] | None = None
) -> Archive:
    """``n`` single-file series (indices ``start`` …) cycling over the source files."""
    sources = list(sources or source_files())
    files = [make_series(sources[i % len(sources)], out, i) for i in range(start, start + n)]
    return Archive(out, files)


def change_pixel(path: Path) -> None:
    """A changed file: the same series, one pixel value changed (new content hash)."""
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.copy()
    arr.flat[0] = arr.flat[0] + 1 if arr.flat[0] < np.iinfo(arr.dtype).max else 0
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _snapshot(store: Path) -> dict[str, tuple[int, str]]:
    out = {}
    if store.exists():
        for p in store.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                out[str(p.relative_to(store))] = (len(data), hashlib.sha1(data).hexdigest())
    return out


def bytes_by_stage(before: dict, after: dict) -> dict[str, int]:
    """Bytes of the store files new or changed between two snapshots, by stage."""
    out: dict[str, int] = {}
    for rel, (size, digest) in after.items():
        if before.get(rel, (0, None))[1] == digest:
            continue
        stage = STAGE_OF_GROUP.get(rel.split("/")[0].split(os.sep)[0], "other")
        out[stage] = out.get(stage, 0) + size
    return out


@dataclass
class Night:
    name: str
    wall: float
    stages: dict[str, float]
    written: dict[str, int]

    @property
    def overhead(self) -> float:
        return max(0.0, self.wall - sum(self.stages.values()))


def run_night(name: str, archive: Path, store: Path, cluster: str) -> Night:
    from flows.nightly import NightlyParams, nightly_flow

    before = _snapshot(store)
    t0 = time.perf_counter()
    out = nightly_flow(NightlyParams(archive=str(archive), store=str(store), cluster=cluster))
    wall = time.perf_counter() - t0
    return Night(name, wall, dict(out.stages), bytes_by_stage(before, _snapshot(store)))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:7.2%}" if b else "    n/a"


def print_nights(n: int, nights: Iterable[Night]) -> None:
    nights = list(nights)
    first = nights[0]
    stages = sorted({s for night in nights for s in (*night.stages, *night.written)})
    print(f"\nN = {n:,} series")
    print(f"  {'night':<10} {'wall s':>8} {'ratio':>8} {'overhead s':>10} {'MB written':>11} "
          f"{'ratio':>8}   per stage (s / MB)")
    total0 = sum(first.written.values())
    for night in nights:
        total = sum(night.written.values())
        per = ", ".join(
            f"{s} {night.stages.get(s, 0.0):.1f}s/{night.written.get(s, 0) / 1e6:.2f}MB"
            for s in stages
        )
        print(f"  {night.name:<10} {night.wall:8.1f} {_ratio(night.wall, first.wall)} "
              f"{night.overhead:10.1f} {total / 1e6:11.2f} {_ratio(total, total0)}   {per}")
    for night in nights[1:]:
        inside = sum(night.stages.values())
        print(f"  {night.name}: stage time {_ratio(inside, sum(first.stages.values()))} of the "
              f"first night's (start-up excluded)")


def bench(n: int, tmp: Path, cluster: str) -> list[Night]:
    archive, store = tmp / f"archive-{n}", tmp / f"store-{n}.zarr"
    t0 = time.perf_counter()
    arch = generate_archive(archive, n)
    print(f"generated {n:,} series in {time.perf_counter() - t0:.1f} s", flush=True)
    nights = [run_night("first", archive, store, cluster)]
    nights.append(run_night("no-change", archive, store, cluster))
    new = max(1, n // 100)
    changed = max(1, n // 1000)
    generate_archive(archive, new, start=n)
    rng = np.random.default_rng(0)
    for k in rng.choice(n, size=changed, replace=False):
        change_pixel(arch.files[int(k)])
    nights.append(run_night("1%-night", archive, store, cluster))
    return nights


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--large", action="store_true", help="also N = 100,000")
    ap.add_argument("--quick", action="store_true", help="N = 50 only (a smoke run)")
    ap.add_argument("--cluster", default="local")
    ap.add_argument("--keep", type=Path, help="build archives and stores here, keep them")
    args = ap.parse_args(argv)
    os.environ.setdefault("MEDPIPE_SECRET", "bench-secret")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    sizes = [50] if args.quick else [*args.sizes, *([100_000] if args.large else [])]
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="medpipe-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for n in sizes:
            results[n] = bench(n, tmp, args.cluster)
            print_nights(n, results[n])
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(results) > 1:
        small, big = min(results), max(results)
        grow = results[big][1].stages, results[small][1].stages
        print(f"\nno-change night stage time, N = {big:,} vs {small:,}: "
              f"{_ratio(sum(grow[0].values()), sum(grow[1].values()))}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
