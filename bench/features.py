"""Benchmark: every medpipe IBSI family, on the original, a LoG and a wavelet image, vs pyradiomics.

Run ``.venv/bin/python bench/features.py`` (``--help`` for options; ``--quick`` runs one
ROI once, to check that the script works: its ratio is not a figure).  The samples are
the 12 IBSI soft-tissue-sarcoma patients' CT volumes and tumour masks
(``<data>/nifti/ibsi_sts/<patient>/CT_{image,mask}.nii.gz``).

What runs
---------
* **medpipe**, as a user runs it: :func:`medpipe.features.extract` (the lazy per-ROI
  graph) computed on a 2-worker ``LocalCluster``
  (:func:`medpipe.cluster.local_cluster_kwargs`), the images already in the workers'
  memory (persisted before timing, as file reading is not timed on either side).  Image
  types ``original``, ``log`` (sigma 3 mm) and ``wavelet`` (coif1, level 1: 8 images).
  Two timed configs: the *same set* as pyradiomics (``firstorder``, ``histogram``,
  ``glcm``, ``glrlm``, ``glszm``, ``ngldm``, ``ngtdm``, ``morphology``: each medpipe
  family computes every IBSI feature of its family, a superset of pyradiomics's class,
  so the ratio errs against medpipe), and *all families* (plus ``gldzm``, ``ivh`` and
  ``peaks``, which pyradiomics does not have; not in the ratio).
* **pyradiomics 3.0.1** (not a project dependency: ``make pyradiomics-venv`` builds its
  venv, ``--venv``) in ``bench/pyradiomics_worker.py``, a subprocess that times itself:
  classes ``firstorder``, ``shape``, ``glcm``, ``glrlm``, ``glszm``, ``gldm``, ``ngtdm``
  on ``Original``, ``LoG`` (3 mm) and ``Wavelet`` (coif1).  **Baseline: 2 processes**
  (``--pyradiomics-jobs``, default 2), the samples shared by a ``multiprocessing`` pool
  as ``pyradiomics --jobs 2`` does: medpipe has 2 cores, so pyradiomics gets both too.
  ``--pyradiomics-jobs 1`` is the single process most scripts run (the ratio then
  doubles, roughly); the output says which one ran.

Same settings on both sides
---------------------------
* Fixed bin *number* (32 bins, ``binCount=32``).  Its bins are IBSI's on every image
  type (``numpy.histogram`` edges from the ROI minimum to maximum), whereas pyradiomics's
  fixed bin *width* starts at a multiple of the width, which medpipe reproduces on the
  original image only (``min_value``; filtered images bin from their ROI minimum, IBSI).
* No resampling, no re-segmentation, label 1.
* pyradiomics's aggregations: GLCM and GLRLM per each of the 13 directions then
  averaged (IBSI "3D, averaged"); GLSZM, GLDM (IBSI's NGLDM, alpha 0, distance 1) and
  NGTDM on one 3-D matrix (IBSI "3D").  Shape on the original image only, both sides.
* Relations: pyradiomics's Kurtosis is IBSI's (excess) kurtosis + 3; its TotalEnergy is
  the energy times the voxel volume; its firstorder Entropy and Uniformity are IBSI's
  intensity-histogram features.

Agreement: each pyradiomics feature with an IBSI counterpart is compared on every sample
and image type.  A feature agrees when ``|medpipe - pyradiomics|`` is within IBSI's
tolerance for it, taken relative (tolerance / |value| of IBSI's CT phantom row in
configuration D: 3D, 32 bins; at least 1e-9).  The run prints the worst relative
disagreement (with the feature's name), a table of features out of tolerance, and the
known deviations (pyradiomics departs from IBSI by design), which are reported apart and
never counted as agreement.  Timings: medians of ``--repeats`` passes; the ratio is the
median of per-pass ratios measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the IBSI name table lives with the IBSI tests
    sys.path.insert(0, str(REPO))

from medpipe.features import FeatureConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pyradiomics_pairs import PAIRS, UNPAIRED  # noqa: E402

BIN_COUNT = 32
LOG_SIGMA_MM = 3.0
WAVELET = "coif1"
SAME_FAMILIES = ("firstorder", "histogram", "glcm", "glrlm", "glszm", "ngldm", "ngtdm",
                 "morphology")
ALL_FAMILIES = SAME_FAMILIES + ("gldzm", "ivh", "peaks")
PYRAD_CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
RTOL_FLOOR = 1e-9

#: image-type prefix of pyradiomics → medpipe's (pyradiomics adds "-3D" to LoG names)
LOG_PYRAD = f"log-sigma-{str(LOG_SIGMA_MM).replace('.', '-')}-mm-3D"
#: known deviations: (predicate on "<image type>_<class>_<feature>", reason)
KNOWN_DEVIATIONS: tuple[tuple[str, str], ...] = (
    (LOG_PYRAD + "_",
     "LoG kernel: pyradiomics filters with SimpleITK's recursive Gaussian, medpipe with a "
     "sampled Gaussian cut at 4 sigma whose second derivative is exact on quadratics "
     "(closer to the analytic LoG; README 'Filtered images'); the filtered voxels differ "
     "by ~1.5 % of the peak, and binning then moves voxels between levels"),
)


# ------------------------------------------------------------------------------ data


def _default_data() -> Path:
    return Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


def find_samples(data: Path) -> list[tuple[str, Path, Path]]:
    """``(patient, CT image, CT mask)`` for every IBSI STS patient under ``data``."""
    root = data / "nifti" / "ibsi_sts"
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        img, msk = d / "CT_image.nii.gz", d / "CT_mask.nii.gz"
        if img.is_file() and msk.is_file():
            out.append((d.name, img, msk))
    return out


def load_sample(img_path: Path, msk_path: Path) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Image (float64) and mask (bool) as ``z, y, x``, and spacing in mm (``z, y, x``)."""
    img = nib.load(img_path)
    msk = nib.load(msk_path)
    image = np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float64)
    mask = np.transpose(np.asanyarray(msk.dataobj), (2, 1, 0)) == 1  # pyradiomics's label
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3][::-1])
    return image, mask, spacing


def feature_config(families: tuple[str, ...]) -> FeatureConfig:
    """The medpipe config matching the pyradiomics worker's settings."""
    return FeatureConfig(
        families=families,
        bin_count=BIN_COUNT,
        glcm_aggregations=("3d_averaged",),
        glrlm_aggregations=("3d_averaged",),
        glszm_aggregations=("3d_merged",),
        gldzm_aggregations=("3d_merged",),
        ngtdm_aggregations=("3d_merged",),
        ngldm_aggregations=("3d_merged",),
        image_types=("original", "log", "wavelet"),
        log_sigma_mm=(LOG_SIGMA_MM,),
        wavelet=WAVELET,
    )


# --------------------------------------------------------------------------- medpipe


def run_medpipe(client, items: list, config: FeatureConfig, *, repeats: int
                ) -> tuple[list[float], dict[str, dict[str, float]]]:
    """Wall seconds per pass of ``extract(...)`` computed on ``client``; last features."""
    from medpipe.features import extract

    seconds: list[float] = []
    feats: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = extract(items, config=config)
        values = client.compute(ds.features.data).result()
        seconds.append(time.perf_counter() - t0)
        names = [str(f) for f in ds.feature.values]
        feats = {
            str(s).split("/")[0]: dict(zip(names, map(float, row), strict=True))
            for s, row in zip(ds.sample.values, values, strict=True)
        }
    return seconds, feats


def warm_up(config: FeatureConfig) -> None:
    """Compute ``config`` once on a small synthetic ROI (run on each worker, untimed)."""
    from medpipe.features import compute_features

    z, y, x = np.mgrid[:12, :24, :24]
    mask = (z - 6) ** 2 / 16 + (y - 12) ** 2 / 64 + (x - 12) ** 2 / 64 < 1
    image = np.random.default_rng(0).normal(40, 30, mask.shape).round()
    compute_features(image, mask, spacing=(3.0, 1.0, 1.0), config=config)


def medpipe_items(client, loaded: list) -> list:
    """``extract`` inputs whose dask arrays are persisted in the workers' memory."""
    import dask.array as da
    import xarray as xr

    items = []
    for name, image, mask, spacing in loaded:
        img = client.persist(da.from_array(image, chunks=(32, 128, 128)))
        msk = client.persist(da.from_array(mask, chunks=(32, 128, 128)))
        dims = ("z", "y", "x")
        items.append((name, xr.DataArray(img, dims=dims, attrs={"spacing": spacing}),
                      {"gtv": xr.DataArray(msk, dims=dims)}))
    from distributed import wait

    wait([it[1].data for it in items] + [it[2]["gtv"].data for it in items])
    return items


# ----------------------------------------------------------------------- pyradiomics


def pyradiomics_python(venv: Path) -> tuple[Path | None, str]:
    """The venv's python if pyradiomics imports there, else ``(None, why)``."""
    py = venv / "bin" / "python"
    if not py.is_file():
        return None, f"no pyradiomics venv at {venv}: run `make pyradiomics-venv`"
    r = subprocess.run([str(py), "-c", "import radiomics, SimpleITK, pywt"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"pyradiomics does not import in {venv}: {r.stderr.strip()[-300:]}"
    return py, ""


def run_pyradiomics(py: Path, samples: list, sizes: dict[str, int], *, repeats: int,
                    jobs: int) -> dict:
    """Run the worker in the venv; its JSON result."""
    job = {
        "samples": [[n, str(i), str(m)] for n, i, m in samples], "sizes": sizes,
        "repeats": repeats, "jobs": jobs, "bin_count": BIN_COUNT,
        "classes": list(PYRAD_CLASSES), "log_sigma": [LOG_SIGMA_MM], "wavelet": WAVELET,
    }
    r = subprocess.run([str(py), str(Path(__file__).with_name("pyradiomics_worker.py"))],
                       input=json.dumps(job), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pyradiomics worker failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- agreement


def ibsi_relative_tolerances(data: Path) -> dict[str, float]:
    """medpipe name → IBSI tolerance / |value| of the CT phantom's configuration D."""
    from tests.features._ibsi import reference_rows

    csv = data / "reference" / "ibsi1_reference_values.csv"
    if not csv.is_file():
        return {}
    return {r.name: abs(r.tolerance / r.expected) for r in reference_rows(csv, "config. D")
            if r.name and r.expected != 0}


def _medpipe_prefix(pyrad_type: str) -> str:
    if pyrad_type == "original":
        return ""
    if pyrad_type == LOG_PYRAD:
        return LOG_PYRAD.removesuffix("-3D") + "_"
    return pyrad_type + "_"


def _relation(value: float, how: str, voxel_volume: float) -> float:
    if how == "excess+3":
        return value + 3.0
    if how == "x voxel volume":
        return value * voxel_volume
    return value


def known_deviation(key: str) -> str | None:
    """The reason a pyradiomics feature ``key`` departs from IBSI by design, or None."""
    return next((why for prefix, why in KNOWN_DEVIATIONS if key.startswith(prefix)), None)


def compare(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]],
            voxel_volumes: dict[str, float], rtols: dict[str, float]) -> list[dict]:
    """One row per shared feature (image type × class × feature), worst over samples."""
    rows: dict[str, dict] = {}
    for sample, pr in theirs.items():
        for key, ref in pr.items():
            ptype, cls, feat = key.split("_", 2)
            if cls not in PAIRS or feat not in PAIRS[cls]:
                continue
            base, how = PAIRS[cls][feat]
            mname = _medpipe_prefix(ptype) + base
            got = _relation(ours[sample][mname], how, voxel_volumes[sample])
            rtol = max(rtols.get(base, RTOL_FLOOR), RTOL_FLOOR)
            diff = abs(got - ref) / max(abs(ref), 1e-300)
            ok = bool(abs(got - ref) <= rtol * abs(ref) + 1e-12)
            row = rows.setdefault(key, {
                "pyradiomics": key, "medpipe": mname, "relation": how, "rtol": rtol,
                "ibsi_rtol": base in rtols, "max_rel_diff": 0.0, "ok": True,
                "worst_sample": sample, "deviation": known_deviation(key),
            })
            if diff > row["max_rel_diff"] or math.isnan(diff):
                row.update(max_rel_diff=diff, worst_sample=sample)
            row["ok"] &= ok
    return list(rows.values())


def print_agreement(rows: list[dict], n: int) -> list[dict]:
    """Print the worst disagreement and the tables; the rows out of tolerance."""
    agreed = [r for r in rows if r["deviation"] is None]
    dev = [r for r in rows if r["deviation"] is not None]
    print(f"\nagreement: {len(rows)} shared features (image type x feature) on {n} samples; "
          f"{len(dev)} of them known deviations")
    for label, group in (("shared (not known deviations)", agreed), ("all shared", rows)):
        if group:
            w = max(group, key=lambda r: r["max_rel_diff"])
            print(f"  worst relative disagreement, {label}: {w['max_rel_diff']:.3g} "
                  f"({w['pyradiomics']} vs medpipe {w['medpipe']}, {w['worst_sample']})")
    bad = [r for r in agreed if not r["ok"]]
    no_ibsi = sorted({r["medpipe"].split("_", 1)[-1] if r["medpipe"].startswith(("wavelet",))
                      else r["medpipe"] for r in rows if not r["ibsi_rtol"]})
    if no_ibsi:
        print(f"  no IBSI config-D tolerance (compared at rtol {RTOL_FLOOR:g}): "
              + ", ".join(no_ibsi))
    print(f"\nout of IBSI tolerance: {len(bad)} of {len(agreed)}")
    if bad:
        print(f"  {'pyradiomics':<58} {'medpipe':<48} {'rel diff':>9} {'IBSI rtol':>9}")
        for r in sorted(bad, key=lambda r: -r["max_rel_diff"]):
            print(f"  {r['pyradiomics']:<58} {r['medpipe']:<48} {r['max_rel_diff']:>9.2e} "
                  f"{r['rtol']:>9.2e}")
    if dev:
        print("\nknown deviations (pyradiomics departs from IBSI by design; not agreement):")
        for prefix, why in KNOWN_DEVIATIONS:
            grp = [r for r in dev if r["pyradiomics"].startswith(prefix)]
            if not grp:
                continue
            w = max(grp, key=lambda r: r["max_rel_diff"])
            within = sum(r["ok"] for r in grp)
            print(f"  {prefix}* ({len(grp)} features, {within} within IBSI tolerance anyway; "
                  f"worst {w['max_rel_diff']:.3g}, {w['pyradiomics']}):\n    {why}")
    return bad


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_default_data(), help="shared data root")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes (>= 3; medians)")
    ap.add_argument("--quick", action="store_true",
                    help="one ROI, one pass: checks that it runs (the ratio is not a figure)")
    ap.add_argument("--pyradiomics-jobs", type=int, default=2, choices=(1, 2),
                    help="pyradiomics processes (default 2: the same 2 cores as medpipe)")
    ap.add_argument("--venv", type=Path, default=Path(os.environ.get(
        "MEDPIPE_BENCH_PYRADIOMICS_VENV", REPO / "bench-output" / "pyradiomics-venv")),
        help="pyradiomics venv (make pyradiomics-venv; env MEDPIPE_BENCH_PYRADIOMICS_VENV)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-output" / "features.json")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else max(args.repeats, 3)

    samples = find_samples(args.data)
    if not samples:
        print(f"no IBSI STS CT samples under {args.data}/nifti/ibsi_sts", file=sys.stderr)
        return 2
    py, why = pyradiomics_python(args.venv)
    if py is None:
        print(f"pyradiomics unavailable: {why}", file=sys.stderr)
        return 2
    loaded = [(n, *load_sample(i, m)) for n, i, m in samples]
    sizes = {n: int(m.sum()) for n, _, m, _ in loaded}
    if args.quick:  # the smallest ROI
        keep = min(sizes, key=sizes.__getitem__)
        samples = [s for s in samples if s[0] == keep]
        loaded = [s for s in loaded if s[0] == keep]
    n = len(loaded)
    vox = {name: float(np.prod(sp)) for name, _, _, sp in loaded}
    roi = [sizes[s[0]] for s in loaded]
    print(f"{n} sample(s) (IBSI STS CT + GTV mask), ROI voxels median {int(np.median(roi))}, "
          f"range {min(roi)}..{max(roi)}; image types original + LoG {LOG_SIGMA_MM:g} mm + "
          f"wavelet {WAVELET} (8); {BIN_COUNT} bins; {repeats} timed pass(es), medians"
          + ("\n--quick: a smoke run; its ratio is not a figure" if args.quick else ""))

    from distributed import Client, LocalCluster

    from medpipe.cluster import local_cluster_kwargs

    same_cfg, all_cfg = feature_config(SAME_FAMILIES), feature_config(ALL_FAMILIES)
    with LocalCluster(**local_cluster_kwargs(2)) as cluster, Client(cluster) as client:
        print(f"medpipe: LocalCluster, 2 single-threaded workers (dashboard "
              f"{cluster.dashboard_link})", flush=True)
        items = medpipe_items(client, loaded)
        client.run(warm_up, all_cfg)  # imports and first calls on *every* worker
        run_medpipe(client, items, all_cfg, repeats=1)  # and one untimed pass
        med_s, med_f = run_medpipe(client, items, same_cfg, repeats=repeats)
        all_s, all_f = run_medpipe(client, items, all_cfg, repeats=repeats)
    print(f"pyradiomics: {args.pyradiomics_jobs} process(es) ...", flush=True)
    pr = run_pyradiomics(py, samples, sizes, repeats=repeats, jobs=args.pyradiomics_jobs)

    ratios = [p / m for m, p in zip(med_s, pr["seconds"], strict=True)]
    speedup = statistics.median(ratios)
    jobs = f"{pr['jobs']} process{'es' if pr['jobs'] > 1 else ''}"
    print(f"\n{'engine':<66} {'ROIs/s':>8} {'s/pass':>8}")
    for label, secs in (
        (f"pyradiomics {pr['version']} ({jobs}; {len(PYRAD_CLASSES)} classes)", pr["seconds"]),
        (f"medpipe, same families ({len(SAME_FAMILIES)}), 2 workers", med_s),
        (f"medpipe, all IBSI families ({len(ALL_FAMILIES)}), 2 workers", all_s),
    ):
        med = statistics.median(secs)
        print(f"{label:<66} {n / med:>8.2f} {med:>8.3f}")
    verdict = "meets" if speedup >= 10 else "MISSES"
    print(f"\nthroughput ratio, medpipe (same families) / pyradiomics ({jobs}): {speedup:.1f}x "
          f"({verdict} the >= 10x target on 2 cores); per pass: "
          + ", ".join(f"{r:.1f}" for r in ratios))
    rows = compare(med_f, pr["features"], vox, ibsi_relative_tolerances(args.data))
    bad = print_agreement(rows, n)
    all_match = all(
        np.allclose(all_f[s][k], v, rtol=1e-12, equal_nan=True)
        for s in med_f for k, v in med_f[s].items()
    )
    print(f"\nmedpipe all-families run gives the same-families features identically: {all_match}"
          f"\nnot compared (no IBSI counterpart): {', '.join(UNPAIRED)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "samples": n, "repeats": repeats, "quick": args.quick,
        "reference": f"pyradiomics {pr['version']}", "pyradiomics_jobs": pr["jobs"],
        "pyradiomics_seconds": pr["seconds"], "medpipe_seconds": med_s,
        "medpipe_all_families_seconds": all_s, "ratio_median": speedup,
        "values": rows,
    }, indent=2, default=str))
    print(f"wrote {args.out}")
    return 1 if bad or not all_match else 0


if __name__ == "__main__":
    sys.exit(main())
