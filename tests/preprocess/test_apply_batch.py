"""preprocess_batch: each grey volume written as preprocess_series writes it; colour listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
from skimage import data

from medpipe import store as st
from medpipe.preprocess import PreprocessConfig
from medpipe.preprocess.apply import preprocess_batch


def test_batch_writes_grey_and_lists_colour(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    grey = np.stack([data.camera()[:64, :64]] * 3).astype(np.float32)
    st.write_image(grey, store=store, path=st.layout.image("g"), axes=("z", "y", "x"),
                   spacing=(2.0, 1.0, 1.0))
    rgb = np.moveaxis(data.astronaut()[:32, :32], -1, 0)
    st.write_image(rgb, store=store, path=st.layout.image("c"), axes=("c", "y", "x"),
                   spacing=(1.0, 1.0))
    cfg = PreprocessConfig.from_dict({"steps": [{"kind": "gaussian", "sigma_mm": 1.0}]})
    written, unsupported = preprocess_batch(store, ["g", "c"], config=cfg)
    assert list(written) == ["g"] and list(unsupported) == ["c"]
    assert "grey-level" in unsupported["c"]
    got = st.open_image(store, written["g"]).values
    ref = ndi.gaussian_filter(grey, sigma=(0.5, 1.0, 1.0), mode="reflect")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)
