"""Raster reader on real images (scikit-image's bundled camera / astronaut)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import tifffile
from PIL import Image

from medpipe import store as S
from medpipe.errors import InvalidSourceError
from medpipe.io.raster import probe_raster, read_raster


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skimage.data.camera()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def test_grey_png_with_dpi(tmp_path: Path, camera: np.ndarray) -> None:
    Image.fromarray(camera).save(tmp_path / "cam.png", dpi=(254, 127))
    p = probe_raster(tmp_path, "cam.png")
    assert (p.kind, p.group, p.role) == ("raster", "cam.png", "image")
    s = read_raster(tmp_path, "cam.png")
    assert s.axes == ("z", "y", "x") and s.data.shape == (1, *camera.shape)
    np.testing.assert_array_equal(s.data[0], camera)
    # 254 dpi along x → 0.1 mm, 127 dpi along y → 0.2 mm (PNG stores pixels per metre)
    np.testing.assert_allclose(s.spacing, (1.0, 0.2, 0.1), rtol=1e-3)
    assert s.header["spacing_source"] == "png-phys"
    assert s.modality == "OT" and s.uid == "cam.png"


def test_rgb_jpeg_matches_imageio(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).save(tmp_path / "astro.jpg", quality=90)
    s = read_raster(tmp_path, "astro.jpg")
    assert s.axes == ("c", "y", "x") and s.data.shape == (3, 512, 512)
    ref = iio.imread(tmp_path / "astro.jpg")  # independent decode
    np.testing.assert_array_equal(np.moveaxis(s.data, 0, -1), ref)
    assert np.abs(s.data.astype(int) - np.moveaxis(astronaut, -1, 0)).mean() < 5
    assert s.spacing == (1.0, 1.0) and s.header["spacing_source"] == "default"


def test_rgba_png_drops_alpha(tmp_path: Path, astronaut: np.ndarray) -> None:
    alpha = np.full(astronaut.shape[:2], 128, np.uint8)
    Image.fromarray(np.dstack([astronaut, alpha])).save(tmp_path / "a.png")
    s = read_raster(tmp_path, "a.png")
    np.testing.assert_array_equal(s.data, np.moveaxis(astronaut, -1, 0))


def test_multipage_tiff_with_resolution(tmp_path: Path, camera: np.ndarray) -> None:
    stack = np.stack([camera, camera[::-1], camera.T]).astype(np.uint16) * 3
    tifffile.imwrite(
        tmp_path / "stack.tif",
        stack,
        resolution=(20, 40),
        resolutionunit="CENTIMETER",
        photometric="minisblack",
    )
    p = probe_raster(tmp_path, "stack.tif")
    assert p.detail["shape"] == [3, 512, 512]
    s = read_raster(tmp_path, "stack.tif")
    assert s.axes == ("z", "y", "x") and s.data.dtype == np.uint16
    np.testing.assert_array_equal(s.data, stack)
    np.testing.assert_allclose(s.spacing, (1.0, 0.25, 0.5))  # 10 mm / 40, 10 mm / 20
    assert s.header["spacing_source"] == "tiff-resolution"


def test_rgb_and_imagej_tiff(tmp_path: Path, astronaut: np.ndarray, camera: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "rgb.tiff", astronaut, photometric="rgb")
    s = read_raster(tmp_path, "rgb.tiff")
    assert s.axes == ("c", "y", "x")
    np.testing.assert_array_equal(s.data, np.moveaxis(astronaut, -1, 0))

    vol = np.stack([camera, camera // 2])
    tifffile.imwrite(
        tmp_path / "ij.tif",
        vol,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"},
    )
    s = read_raster(tmp_path, "ij.tif")
    np.testing.assert_array_equal(s.data, vol)
    np.testing.assert_allclose(s.spacing, (0.003, 0.0005, 0.0005))


def test_raster_to_store(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).save(tmp_path / "astro.png")
    s = read_raster(tmp_path, "astro.png")
    store = str(tmp_path / "store")
    S.write_image(s.data, store=store, path="images/astro", axes=s.axes, spacing=s.spacing)
    got = S.open_image(store, "images/astro")
    assert got.dims == ("c", "y", "x")
    np.testing.assert_array_equal(got.values, s.data)


def test_bad_raster_files(tmp_path: Path, camera: np.ndarray) -> None:
    Image.fromarray(camera).save(tmp_path / "cam.png")
    raw = (tmp_path / "cam.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 50)
    (tmp_path / "text.jpg").write_bytes(b"hello")
    for name in ("cut.png", "junk.tif", "text.jpg"):
        with pytest.raises(InvalidSourceError) as info:
            read_raster(tmp_path, name)
        assert info.value.path == name
    for name in ("junk.tif", "text.jpg"):
        with pytest.raises(InvalidSourceError):
            probe_raster(tmp_path, name)
