"""pyradiomics side of ``bench/features.py``; runs inside the benchmark's throw-away venv.

Never imported by medpipe: it needs pyradiomics and SimpleITK, which are not project
dependencies.  Reads a JSON job from stdin::

    {"samples": [[name, image_path, mask_path], ...], "repeats": 3, "bin_width": 25}

loads every image and mask first (untimed), then times ``repeats`` passes of
``RadiomicsFeatureExtractor.execute`` over all samples (first-order + GLCM, no
resampling, no re-segmentation, ``additionalInfo`` off) and prints one JSON object:
``{"version", "seconds": [per pass], "features": {name: {feature: value}}}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main() -> None:
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    job = json.load(sys.stdin)
    ext = featureextractor.RadiomicsFeatureExtractor(
        binWidth=float(job["bin_width"]), additionalInfo=False
    )
    ext.disableAllFeatures()
    ext.enableFeatureClassByName("firstorder")
    ext.enableFeatureClassByName("glcm")
    loaded = [(name, sitk.ReadImage(img), sitk.ReadImage(msk)) for name, img, msk in job["samples"]]
    seconds = []
    feats: dict[str, dict[str, float]] = {}
    for _ in range(int(job["repeats"])):
        t0 = time.perf_counter()
        for name, img, msk in loaded:
            res = ext.execute(img, msk)
            feats[name] = {
                k.removeprefix("original_"): float(v)
                for k, v in res.items()
                if k.startswith("original_")
            }
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"version": radiomics.__version__, "seconds": seconds, "features": feats}))


if __name__ == "__main__":
    main()
