"""Benchmark: medpipe first-order + GLCM features versus pyradiomics 3.0.1.

Run ``.venv/bin/python bench/features.py`` (``--help`` for options).  The samples are the
12 IBSI soft-tissue-sarcoma patients' CT volumes and tumour masks
(``<data>/nifti/ibsi_sts/<patient>/CT_{image,mask}.nii.gz``).

* **medpipe** runs in this process: :func:`medpipe.features.compute_features` per sample
  with families first-order + intensity histogram + GLCM (pyradiomics's ``firstorder``
  class includes the binned-histogram Entropy and Uniformity, which medpipe files under
  ``histogram``), fixed bin width 25 and the GLCM aggregation pyradiomics computes
  (IBSI "3D, averaged": features per each of the 13 directions, then the mean).
* **pyradiomics** is not a project dependency.  The benchmark makes a throw-away venv
  (``--venv``, default ``bench-output/pyradiomics-venv``), installs ``numpy setuptools
  wheel SimpleITK pykwalify six`` and then ``pyradiomics==3.0.1`` with
  ``--no-build-isolation`` there, and runs ``bench/pyradiomics_worker.py`` in it as a
  subprocess that times itself and prints JSON.  If pyradiomics cannot be installed or
  imported, the benchmark says so and compares against scikit-image's
  ``graycomatrix``/``graycoprops`` instead (2-D, per slice, 4 angles, merged: IBSI
  "2.5D, merged").

Both sides time feature computation on images already in memory (file reading is not
timed) and the mean over ``--repeats`` passes over all samples is not used: medians are
quoted, since the machine is shared and noisy.

Settings that differ between the two by default, and what the benchmark does about them:

* pyradiomics's fixed-bin-width edges are multiples of the bin width
  (``floor(x/w) - floor(min/w) + 1``) whereas IBSI's start at the ROI minimum
  (``floor((x - min)/w) + 1``).  medpipe gets pyradiomics's bins with
  ``min_value = floor(min/w)·w``; the benchmark sets that per sample (inside the timed
  loop) so the GLCM values can be compared.
* pyradiomics applies no re-segmentation and no resampling by default; neither does
  medpipe here.
* pyradiomics's Energy/TotalEnergy/RootMeanSquared add ``voxelArrayShift`` (default 0,
  so equal to IBSI's); TotalEnergy is Energy times the voxel volume.
* pyradiomics's Kurtosis is the plain fourth standardised moment; IBSI's (medpipe's) is
  the excess kurtosis, 3 less.
* pyradiomics adds ``eps`` inside its logarithms: entropies differ by ~1e-15.
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

from medpipe.features import FeatureConfig, compute_features

REPO = Path(__file__).resolve().parents[1]
BIN_WIDTH = 25.0
PYRAD_PACKAGES = ["numpy", "setuptools", "wheel", "SimpleITK", "pykwalify", "six"]
PYRAD_SPEC = "pyradiomics==3.0.1"

#: pyradiomics feature → (medpipe feature, how to turn medpipe's value into pyradiomics's)
FIRSTORDER_PAIRS: dict[str, tuple[str, str]] = {
    "Mean": ("firstorder_mean", "same"),
    "Variance": ("firstorder_variance", "same"),
    "Skewness": ("firstorder_skewness", "same"),
    "Kurtosis": ("firstorder_kurtosis", "excess+3"),
    "Median": ("firstorder_median", "same"),
    "Minimum": ("firstorder_minimum", "same"),
    "10Percentile": ("firstorder_p10", "same"),
    "90Percentile": ("firstorder_p90", "same"),
    "Maximum": ("firstorder_maximum", "same"),
    "InterquartileRange": ("firstorder_iqr", "same"),
    "Range": ("firstorder_range", "same"),
    "MeanAbsoluteDeviation": ("firstorder_mad", "same"),
    "RobustMeanAbsoluteDeviation": ("firstorder_robust_mad", "same"),
    "RootMeanSquared": ("firstorder_rms", "same"),
    "Energy": ("firstorder_energy", "same"),
    "TotalEnergy": ("firstorder_energy", "x voxel volume"),
    "Entropy": ("ih_entropy", "same"),
    "Uniformity": ("ih_uniformity", "same"),
}
GLCM_PAIRS: dict[str, str] = {
    "Autocorrelation": "autocorrelation",
    "ClusterProminence": "cluster_prominence",
    "ClusterShade": "cluster_shade",
    "ClusterTendency": "cluster_tendency",
    "Contrast": "contrast",
    "Correlation": "correlation",
    "DifferenceAverage": "diff_average",
    "DifferenceEntropy": "diff_entropy",
    "DifferenceVariance": "diff_variance",
    "Id": "inv_diff",
    "Idm": "inv_diff_moment",
    "Idmn": "inv_diff_moment_norm",
    "Idn": "inv_diff_norm",
    "Imc1": "info_corr1",
    "Imc2": "info_corr2",
    "InverseVariance": "inv_variance",
    "JointAverage": "joint_average",
    "JointEnergy": "asm",
    "JointEntropy": "joint_entropy",
    "MaximumProbability": "joint_max",
    "SumAverage": "sum_average",
    "SumEntropy": "sum_entropy",
    "SumSquares": "joint_variance",
}
#: pyradiomics GLCM features with no IBSI counterpart
GLCM_UNPAIRED = ("MCC",)
RTOL = 1e-6  # far tighter than IBSI's tolerances: the definitions are the same


# ------------------------------------------------------------------------------ data


def _default_data() -> Path:
    return Path(os.environ.get("MEDPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


def find_samples(data: Path) -> list[tuple[str, Path, Path]]:
    """``(patient, CT image, CT mask)`` for every IBSI STS patient under ``data``."""
    root = data / "nifti" / "ibsi_sts"
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
    mask = np.transpose(np.asanyarray(msk.dataobj), (2, 1, 0)) > 0
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3][::-1])
    return image, mask, spacing


# --------------------------------------------------------------------------- medpipe


def pyradiomics_config(image: np.ndarray, mask: np.ndarray, aggregations: tuple) -> FeatureConfig:
    """medpipe settings that reproduce pyradiomics's zero-aligned fixed bin width."""
    lo = math.floor(float(image[mask].min()) / BIN_WIDTH) * BIN_WIDTH
    return FeatureConfig(
        families=("firstorder", "histogram", "glcm"),
        bin_width=BIN_WIDTH,
        min_value=lo,
        glcm_aggregations=aggregations,
    )


def run_medpipe(
    loaded: list[tuple[str, np.ndarray, np.ndarray, tuple]],
    *,
    repeats: int,
    aggregations: tuple[str, ...] = ("3d_averaged",),
) -> tuple[list[float], dict[str, dict[str, float]]]:
    """Seconds per pass over all samples, and the last pass's features."""
    seconds: list[float] = []
    feats: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name, image, mask, spacing in loaded:
            cfg = pyradiomics_config(image, mask, aggregations)
            feats[name] = compute_features(image, mask, spacing=spacing, config=cfg)
        seconds.append(time.perf_counter() - t0)
    return seconds, feats


# ----------------------------------------------------------------------- pyradiomics


def ensure_pyradiomics_venv(venv: Path) -> tuple[Path | None, str]:
    """Create the throw-away venv with pyradiomics; ``(python, "")`` or ``(None, why)``."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import radiomics, SimpleITK; print(radiomics.__version__)"]
    if py.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return py, ""
    log = venv.parent / f"{venv.name}-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "--quiet", *PYRAD_PACKAGES],
        [str(py), "-m", "pip", "install", "--quiet", "--no-build-isolation", PYRAD_SPEC],
    ]
    print(f"creating the pyradiomics venv at {venv} (log: {log}) ...", flush=True)
    with open(log, "w") as fh:
        for cmd in steps:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                return None, f"`{' '.join(cmd[2:])}` failed (exit {r.returncode}); see {log}"
    r = subprocess.run(check, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"pyradiomics installed but does not import: {r.stderr.strip()[-500:]}"
    return py, ""


def run_pyradiomics(py: Path, samples: list[tuple[str, Path, Path]], *, repeats: int) -> dict:
    """Run the worker in the venv; its JSON result."""
    job = {
        "samples": [[n, str(i), str(m)] for n, i, m in samples],
        "repeats": repeats,
        "bin_width": BIN_WIDTH,
    }
    r = subprocess.run(
        [str(py), str(Path(__file__).with_name("pyradiomics_worker.py"))],
        input=json.dumps(job),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"pyradiomics worker failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _to_pyradiomics(value: float, how: str, voxel_volume: float) -> float:
    if how == "sqrt":
        return math.sqrt(value)
    if how == "excess+3":
        return value + 3.0
    if how == "x voxel volume":
        return value * voxel_volume
    return value


def compare_values(
    ours: dict[str, dict[str, float]],
    theirs: dict[str, dict[str, float]],
    voxel_volumes: dict[str, float],
) -> list[tuple[str, str, str, float, bool]]:
    """Rows ``(pyradiomics name, medpipe name, relation, max rel. diff, ok)``."""
    rows = []
    pairs = [(f"firstorder_{k}", m, how) for k, (m, how) in FIRSTORDER_PAIRS.items()]
    pairs += [(f"glcm_{k}", f"glcm_{m}_3d_averaged", "same") for k, m in GLCM_PAIRS.items()]
    for pname, mname, how in pairs:
        worst = 0.0
        ok = True
        for sample, pr in theirs.items():
            ref = pr[pname]
            got = _to_pyradiomics(ours[sample][mname], how, voxel_volumes[sample])
            diff = abs(got - ref) / max(abs(ref), 1e-12)
            worst = max(worst, diff)
            ok &= bool(np.isclose(got, ref, rtol=RTOL, atol=1e-12))
        rows.append((pname, mname, how, worst, ok))
    return rows


# ------------------------------------------------------------------- skimage fallback


def run_skimage(
    loaded: list[tuple[str, np.ndarray, np.ndarray, tuple]], *, repeats: int
) -> tuple[list[float], dict[str, dict[str, float]]]:
    """scikit-image 2.5D-merged GLCM props (levels 0 = outside, row/col 0 dropped)."""
    from skimage.feature import graycomatrix, graycoprops

    from medpipe.features.discretise import discretise_image

    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    seconds: list[float] = []
    feats: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name, image, mask, _spacing in loaded:
            lo = math.floor(float(image[mask].min()) / BIN_WIDTH) * BIN_WIDTH
            box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
            lv = discretise_image(image[box], mask[box], bin_width=BIN_WIDTH, min_value=lo)
            ng = int(lv.max())
            total = np.zeros((ng, ng))
            for sl in lv:
                m = graycomatrix(sl, [1], angles, levels=ng + 1, symmetric=True)
                total += m[1:, 1:, 0, :].sum(axis=-1)
            p = total[:, :, None, None]
            feats[name] = {
                f"glcm_{prop}": float(graycoprops(p, prop)[0, 0])
                for prop in ("contrast", "dissimilarity", "homogeneity", "ASM", "correlation")
            }
        seconds.append(time.perf_counter() - t0)
    return seconds, feats


SKIMAGE_PAIRS = {
    "glcm_contrast": "glcm_contrast_2_5d_merged",
    "glcm_dissimilarity": "glcm_dissimilarity_2_5d_merged",
    "glcm_homogeneity": "glcm_inv_diff_moment_2_5d_merged",
    "glcm_ASM": "glcm_asm_2_5d_merged",
    "glcm_correlation": "glcm_correlation_2_5d_merged",
}


# ------------------------------------------------------------------------------ main


def _rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=_default_data(), help="shared data root")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes (>= 3)")
    ap.add_argument(
        "--venv",
        type=Path,
        default=Path(
            os.environ.get(
                "MEDPIPE_BENCH_PYRADIOMICS_VENV", REPO / "bench-output" / "pyradiomics-venv"
            )
        ),
        help="throw-away venv for pyradiomics (env MEDPIPE_BENCH_PYRADIOMICS_VENV)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench-output" / "features.json")
    ap.add_argument(
        "--skimage", action="store_true", help="skip pyradiomics, compare with scikit-image"
    )
    args = ap.parse_args(argv)
    repeats = max(args.repeats, 3)

    samples = find_samples(args.data)
    if not samples:
        print(f"no IBSI STS CT samples under {args.data}", file=sys.stderr)
        return 2
    loaded = [(n, *load_sample(i, m)) for n, i, m in samples]
    n = len(loaded)
    vox = {name: float(np.prod(sp)) for name, _, _, sp in loaded}
    sizes = [int(m.sum()) for _, _, m, _ in loaded]
    print(
        f"{n} samples (IBSI STS CT + GTV mask), ROI voxels: median {int(np.median(sizes))}, "
        f"range {min(sizes)}..{max(sizes)}; {repeats} timed passes, medians quoted\n"
    )
    run_medpipe(loaded, repeats=1)  # warm-up (imports, caches)
    result: dict = {"samples": n, "repeats": repeats}

    py, why = (None, "--skimage given") if args.skimage else ensure_pyradiomics_venv(args.venv)
    if py is not None:
        med_s, med_f = run_medpipe(loaded, repeats=repeats)
        pr = run_pyradiomics(py, samples, repeats=repeats)
        all_s, _ = run_medpipe(
            loaded, repeats=repeats, aggregations=("3d_merged", "3d_averaged", "2d_averaged")
        )
        ratios = [p / m for m, p in zip(med_s, pr["seconds"], strict=True)]
        print(f"{'engine':<58} {'samples/s':>10} {'s/pass':>8}")
        print(
            f"{'pyradiomics ' + pr['version'] + ' (firstorder + glcm, 13 dirs)':<58} "
            f"{_rate(n, pr['seconds']):>10.2f} {statistics.median(pr['seconds']):>8.3f}"
        )
        print(
            f"{'medpipe (firstorder + histogram + glcm 3D averaged)':<58} "
            f"{_rate(n, med_s):>10.2f} {statistics.median(med_s):>8.3f}"
        )
        print(
            f"{'medpipe (same + glcm 3D merged + 2D averaged)':<58} "
            f"{_rate(n, all_s):>10.2f} {statistics.median(all_s):>8.3f}"
        )
        speedup = statistics.median(ratios)
        verdict = "meets" if speedup >= 5 else "MISSES"
        print(
            f"\nmedian speed-up (per pass, pyradiomics s / medpipe s): {speedup:.1f}x "
            f"({verdict} the >= 5x target); per pass: " + ", ".join(f"{r:.1f}" for r in ratios)
        )
        rows = compare_values(med_f, pr["features"], vox)
        print(f"\nvalues on {n} samples, rtol {RTOL:g} (medpipe value turned into pyradiomics's)")
        print(f"{'pyradiomics':<38} {'medpipe':<38} {'relation':<15} {'max rel diff':>12} ok")
        for pname, mname, how, worst, ok in rows:
            print(f"{pname:<38} {mname:<38} {how:<15} {worst:>12.2e} {'yes' if ok else 'NO'}")
        print(f"not compared (no IBSI counterpart): {', '.join(GLCM_UNPAIRED)}")
        result.update(
            reference=f"pyradiomics {pr['version']}",
            pyradiomics_seconds=pr["seconds"],
            medpipe_seconds=med_s,
            medpipe_all_aggregations_seconds=all_s,
            speedup_median=speedup,
            values=[
                {"pyradiomics": a, "medpipe": b, "relation": c, "max_rel_diff": d, "ok": e}
                for a, b, c, d, e in rows
            ],
        )
        failed = [r[0] for r in rows if not r[4]]
    else:
        print(f"pyradiomics NOT available ({why}); comparing with scikit-image instead\n")
        med_s, med_f = run_medpipe(loaded, repeats=repeats, aggregations=("2_5d_merged",))
        sk_s, sk_f = run_skimage(loaded, repeats=repeats)
        ratios = [s / m for m, s in zip(med_s, sk_s, strict=True)]
        print(f"scikit-image graycomatrix+graycoprops: {_rate(n, sk_s):.2f} samples/s")
        print(
            f"medpipe (firstorder + histogram + glcm 2.5D merged): {_rate(n, med_s):.2f} samples/s"
        )
        speedup = statistics.median(ratios)
        print(f"median speed-up over scikit-image: {speedup:.1f}x")
        failed = []
        for sk_name, mp_name in SKIMAGE_PAIRS.items():
            worst = 0.0
            for s in sk_f:
                ref, got = sk_f[s][sk_name], med_f[s][mp_name]
                worst = max(worst, abs(got - ref) / max(abs(ref), 1e-12))
            ok = worst <= RTOL
            failed += [] if ok else [sk_name]
            print(f"{sk_name:<24} {mp_name:<36} {worst:>12.2e} {'yes' if ok else 'NO'}")
        result.update(
            reference="scikit-image (pyradiomics unavailable: " + why + ")",
            skimage_seconds=sk_s,
            medpipe_seconds=med_s,
            speedup_median=speedup,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    if failed:
        print(f"VALUE MISMATCH: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
