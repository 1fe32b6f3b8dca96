"""pyradiomics side of ``bench/features.py``; runs inside the throw-away pyradiomics venv.

Never imported by medpipe: it needs pyradiomics, SimpleITK and PyWavelets, which are not
project dependencies (``make pyradiomics-venv`` builds the venv).  Reads a JSON job from
stdin::

    {"samples": [[name, image_path, mask_path], ...], "repeats": 3, "jobs": 2,
     "bin_count": 32, "classes": ["firstorder", "shape", ...],
     "log_sigma": [3.0], "wavelet": "coif1"}

Each of ``jobs`` processes (a ``multiprocessing`` pool, as pyradiomics's own batch
command ``pyradiomics --jobs N`` runs) loads every image and mask first and runs one
untimed warm-up ``execute`` on the smallest sample.  Then ``repeats`` passes are timed:
a pass hands every sample to the pool (one at a time, largest first, so the two
processes stay busy) and lasts until the last one is back.  ``jobs = 1`` runs in this
process.  Settings: ``RadiomicsFeatureExtractor(binCount=..., label=1,
additionalInfo=False)``, image types ``Original``, ``LoG`` (``log_sigma``) and
``Wavelet`` (``wavelet``), the feature classes ``classes``; no resampling, no
re-segmentation.  Prints one JSON object: ``{"version", "jobs", "seconds": [per pass],
"features": {name: {feature: value}}}`` with pyradiomics's names
(``log-sigma-3-0-mm-3D_glcm_Contrast``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_JOB: dict[str, Any] = {}
_LOADED: dict[str, tuple[Any, Any]] = {}
_EXT: Any = None


def _init(job: dict[str, Any]) -> None:
    """Per process: the extractor, every image in memory, one warm-up execute."""
    global _EXT
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    _JOB.update(job)
    ext = featureextractor.RadiomicsFeatureExtractor(
        binCount=int(job["bin_count"]), label=1, additionalInfo=False
    )
    ext.disableAllImageTypes()
    ext.enableImageTypeByName("Original")
    ext.enableImageTypeByName("LoG", customArgs={"sigma": [float(s) for s in job["log_sigma"]]})
    ext.enableImageTypeByName("Wavelet", customArgs={"wavelet": job["wavelet"]})
    ext.disableAllFeatures()
    for cls in job["classes"]:
        ext.enableFeatureClassByName(cls)
    _EXT = ext
    for name, img, msk in job["samples"]:
        _LOADED[name] = (sitk.ReadImage(img), sitk.ReadImage(msk))
    smallest = min(job["samples"], key=lambda s: job.get("sizes", {}).get(s[0], 0))[0]
    _EXT.execute(*_LOADED[smallest])


def _ready(_: int) -> int:
    import os

    time.sleep(0.2)
    return os.getpid()


def _one(name: str) -> tuple[str, dict[str, float]]:
    res = _EXT.execute(*_LOADED[name])
    return name, {k: float(v) for k, v in res.items() if not k.startswith("diagnostics")}


def main() -> None:
    import radiomics

    job = json.load(sys.stdin)
    jobs = int(job.get("jobs", 1))
    sizes = job.get("sizes", {})
    order = sorted((s[0] for s in job["samples"]), key=lambda n: -sizes.get(n, 0))
    seconds: list[float] = []
    feats: dict[str, dict[str, float]] = {}
    if jobs <= 1:
        _init(job)
        for _ in range(int(job["repeats"])):
            t0 = time.perf_counter()
            feats = dict(_one(n) for n in order)
            seconds.append(time.perf_counter() - t0)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs, initializer=_init, initargs=(job,)) as pool:
            while len(set(pool.map(_ready, range(jobs), chunksize=1))) < jobs:
                pass  # until every process has run its initializer
            for _ in range(int(job["repeats"])):
                t0 = time.perf_counter()
                feats = dict(pool.imap_unordered(_one, order, chunksize=1))
                seconds.append(time.perf_counter() - t0)
    print(json.dumps({
        "version": radiomics.__version__, "jobs": jobs, "seconds": seconds, "features": feats,
    }))


if __name__ == "__main__":
    main()
