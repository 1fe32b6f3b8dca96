"""napari opens a store's images through the napari-ome-zarr plugin's reader, no window.

The reader function the plugin registers (``napari_ome_zarr.napari_get_reader``) is
called on an image group; its layer data become napari layers with
``napari.layers.Layer.create``, as napari's own file-open does.  The image must come as
an image layer and each mask as a labels layer, carrying the voxels the store holds,
the physical scale in mm (the NGFF ``scale``, the step of ``open_image``'s coords) and
the NGFF ``translation`` (the LPS origin projected on the array axes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medpipe import ingest, store

pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[dev]')")
napari_ome_zarr = pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr is not installed")

from napari.layers import Image, Labels, Layer  # noqa: E402
from packaging.version import Version  # noqa: E402

SECRET = b"test-secret"
#: napari-ome-zarr 0.10 (the last release for Python 3.11) keeps only the first of a
#: dataset's coordinateTransformations (the scale) and drops the translation.
DROPS_TRANSLATION = Version(napari_ome_zarr.__version__) < Version("0.11")


def _ngff(group_dir: Path) -> tuple[list[float], list[float]]:
    """Level 0's NGFF scale and translation, read from the group's ``zarr.json``."""
    ome = json.loads((group_dir / "zarr.json").read_text())["attributes"]["ome"]
    transforms = {t["type"]: t for t in ome["multiscales"][0]["datasets"][0][
        "coordinateTransformations"]}
    return transforms["scale"]["scale"], transforms["translation"]["translation"]


def _layers(group_dir: Path) -> list[Layer]:
    reader = napari_ome_zarr.napari_get_reader(str(group_dir))
    assert callable(reader), f"napari-ome-zarr does not read {group_dir}"
    return [Layer.create(*layer_data) for layer_data in reader(str(group_dir))]


def _ingest(archive: Path, out: str) -> str:
    assert ingest.ingest_archive(str(archive), out, secret=SECRET).quarantined == 0
    (group,) = store.list_groups(out, "images")
    return group


@pytest.fixture(scope="module")
def bundled_ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """pydicom's CT, ingested; then written again with a body mask (HU > -300)."""
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("napari")
    (root / "archive").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "archive")
    out = str(root / "store.zarr")
    img = store.open_image(out, _ingest(root / "archive", out))
    meta: dict[str, Any] = img.attrs
    path = store.write_image(img.values, store=out, path="images/ct-with-mask",
                             axes=img.dims, spacing=meta["spacing"], origin=meta["origin"],
                             direction=meta["direction"], attrs={"modality": "CT"},
                             labels={"body": img.values > -300})
    return out, path


@pytest.fixture(scope="module")
def ibsi_ct(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An IBSI sarcoma CT with its RTSTRUCT tumour contour, ingested."""
    root = tmp_path_factory.mktemp("napari-ibsi")
    shutil.copytree(shared_data / "dicom" / "ibsi_sts" / "STS_002" / "CT", root / "archive")
    out = str(root / "store.zarr")
    return out, _ingest(root / "archive", out)


@pytest.fixture(params=["bundled_ct", "ibsi_ct"])
def series(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.getfixturevalue(request.param)


def test_image_and_labels_layers_in_mm(series: tuple[str, str]) -> None:
    out, path = series
    group_dir = Path(out) / path
    scale, _ = _ngff(group_dir)
    img = store.open_image(out, path)
    masks = store.open_labels(out, path)
    assert masks, "the series has no labels to show"
    # open_image's coords step by the same physical spacing as the NGFF scale
    steps = [float(img[d][1] - img[d][0]) if img.sizes[d] > 1 else s
             for d, s in zip(img.dims, scale, strict=True)]
    np.testing.assert_allclose(steps, scale, rtol=1e-9)

    layers = _layers(group_dir)
    images = [la for la in layers if isinstance(la, Image)]
    labels = {la.name.rsplit("/", 1)[-1]: la for la in layers if isinstance(la, Labels)}
    assert len(images) == 1 and len(layers) == 1 + len(masks), [type(la) for la in layers]
    assert sorted(labels) == sorted(masks)
    for layer, expected in [(images[0], img), *((labels[k], m) for k, m in masks.items())]:
        level0 = layer.data[0] if layer.multiscale else layer.data
        np.testing.assert_array_equal(np.asarray(level0), expected.values)
        np.testing.assert_allclose(layer.scale, scale, rtol=1e-9)
        assert [str(u) for u in layer.units] == ["millimeter"] * len(scale)
        # one voxel step along each axis moves by the spacing in world (mm) coordinates
        step = np.subtract(layer.data_to_world(np.ones(len(scale))),
                           layer.data_to_world(np.zeros(len(scale))))
        np.testing.assert_allclose(step, scale, rtol=1e-9)


@pytest.mark.xfail(
    DROPS_TRANSLATION,
    strict=True,
    reason="napari-ome-zarr <0.11 reads only the first coordinateTransformation (scale) "
    "of datasets[0] and drops the NGFF translation",
)
def test_layers_translated_to_the_origin(bundled_ct: tuple[str, str]) -> None:
    out, path = bundled_ct
    group_dir = Path(out) / path
    _, translation = _ngff(group_dir)
    img = store.open_image(out, path)
    # the NGFF translation is the LPS origin projected on the array axes
    rows = np.asarray(img.attrs["direction"])
    np.testing.assert_allclose(translation, rows @ np.asarray(img.attrs["origin"]), atol=1e-6)
    for layer in _layers(group_dir):
        np.testing.assert_allclose(layer.data_to_world(np.zeros(len(translation))),
                                   translation, atol=1e-6, err_msg=layer.name)
