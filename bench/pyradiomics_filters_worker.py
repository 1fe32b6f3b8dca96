"""pyradiomics's image types; runs inside the throw-away pyradiomics venv.

Never imported by medpipe (it needs pyradiomics, SimpleITK and PyWavelets of that venv,
``make pyradiomics-venv``).  ``tests/features/test_image_types_pyradiomics.py`` runs it
as a subprocess.  Reads a JSON job from stdin::

    {"cases": [[name, image_path, mask_path], ...], "sigma": [1.0, 3.0],
     "wavelet": "coif1", "bin_width": 25, "out": "/tmp/dir"}

and for each case

* runs ``RadiomicsFeatureExtractor.execute`` with the ``LoG`` (``sigma``),
  ``Wavelet``, ``Square``, ``SquareRoot``, ``Logarithm``, ``Exponential`` and
  ``Gradient`` image types, feature classes ``firstorder`` and ``glcm`` (bin width
  ``bin_width``, no resampling, label 1, ``additionalInfo`` off);
* writes each filtered image's ROI voxels (``imageoperations.get<Type>Image`` on the
  whole image, then the label-1 voxels in NumPy's ``z, y, x`` C order) to
  ``<out>/<case>_<image type>.npy``, and each LoG image whole (``z, y, x``) to
  ``<out>/<case>_<image type>_image.npy``;

and prints one JSON object: ``{"version", "features": {case: {name: value}}}`` with the
names as pyradiomics spells them (``log-sigma-1-0-mm-3D_firstorder_Mean``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

#: the other image types (pyradiomics's spelling), with their default settings
POINTWISE = ("Square", "SquareRoot", "Logarithm", "Exponential", "Gradient")


def main() -> None:
    import numpy as np
    import radiomics
    import SimpleITK as sitk
    from radiomics import featureextractor, imageoperations

    radiomics.setVerbosity(logging.ERROR)
    job = json.load(sys.stdin)
    out = Path(job["out"])
    sigma = [float(s) for s in job["sigma"]]
    ext = featureextractor.RadiomicsFeatureExtractor(
        binWidth=float(job["bin_width"]), additionalInfo=False, label=1
    )
    ext.disableAllImageTypes()
    ext.enableImageTypeByName("LoG", customArgs={"sigma": sigma})
    ext.enableImageTypeByName("Wavelet", customArgs={"wavelet": job["wavelet"]})
    for other in POINTWISE:
        ext.enableImageTypeByName(other)
    ext.disableAllFeatures()
    ext.enableFeatureClassByName("firstorder")
    ext.enableFeatureClassByName("glcm")
    feats: dict[str, dict[str, float]] = {}
    for name, img_path, msk_path in job["cases"]:
        image, mask = sitk.ReadImage(img_path), sitk.ReadImage(msk_path)
        res = ext.execute(image, mask)
        feats[name] = {k: float(v) for k, v in res.items() if not k.startswith("diagnostics")}
        roi = sitk.GetArrayFromImage(mask) == 1
        filtered = list(imageoperations.getLoGImage(image, mask, sigma=sigma))
        filtered += list(imageoperations.getWaveletImage(image, mask, wavelet=job["wavelet"]))
        for other in POINTWISE:
            filtered += list(getattr(imageoperations, f"get{other}Image")(image, mask))
        for fimg, tname, _ in filtered:
            arr = sitk.GetArrayFromImage(fimg).astype(np.float64)
            np.save(out / f"{name}_{tname}.npy", arr[roi])
            if tname.startswith("log-"):  # whole, for features of pyradiomics's own image
                np.save(out / f"{name}_{tname}_image.npy", arr)
    print(json.dumps({"version": radiomics.__version__, "features": feats}))


if __name__ == "__main__":
    main()
