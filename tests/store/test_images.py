"""OME-Zarr store: NGFF readers, round trips, atomicity, labels."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dask.array as da
import numpy as np
import pydicom
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.testing import data_path
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Labels, Multiscales, Reader
from pydicom.data import get_testdata_file
from skimage.measure import block_reduce

from medpipe import store as S
from medpipe.errors import SeriesNotFoundError
from medpipe.io.nifti import read_nifti

NIB = Path(data_path)


def _write_series(series, store: str, path: str, **kw) -> str:
    return S.write_image(
        series.data,
        store=store,
        path=path,
        axes=series.axes,
        spacing=series.spacing,
        origin=series.origin,
        direction=series.direction,
        labels=series.labels,
        attrs={"modality": series.modality, "rescale": series.rescale},
        **kw,
    )


def _ct_small() -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
    sy, sx = (float(v) for v in ds.PixelSpacing)
    return (
        hu[np.newaxis],
        (float(ds.SliceThickness), sy, sx),
        tuple(float(v) for v in ds.ImagePositionPatient),
    )


def _ngff_nodes(url: str) -> list:
    return list(Reader(parse_url(url))())


# ----------------------------------------------------------------- independent readers


def test_ct_small_opens_with_ome_zarr_xarray_and_zarr(tmp_path: Path) -> None:
    data, spacing, origin = _ct_small()
    store = str(tmp_path / "store")
    S.write_image(
        data,
        store=store,
        path="images/ct",
        axes=("z", "y", "x"),
        spacing=spacing,
        origin=origin,
        attrs={"modality": "CT"},
    )
    assert S.exists(store, "images/ct")

    nodes = _ngff_nodes(f"{store}/images/ct")
    image = nodes[0]
    assert any(isinstance(s, Multiscales) for s in image.specs)
    np.testing.assert_array_equal(image.data[0].compute(), data)
    ct = image.metadata["coordinateTransformations"][0]
    scale = next(t["scale"] for t in ct if t["type"] == "scale")
    np.testing.assert_allclose(scale, spacing)
    trans = next(t["translation"] for t in ct if t["type"] == "translation")
    np.testing.assert_allclose(trans, origin[::-1])  # axis-aligned: (S, P, L) of voxel 0
    assert [a["name"] for a in image.metadata["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "millimeter" for a in image.metadata["axes"])

    attrs = zarr.open_group(store, mode="r", path="images/ct").attrs.asdict()
    assert attrs["ome"]["version"] == "0.5"
    assert attrs["medpipe"]["complete"] is True and attrs["medpipe"]["modality"] == "CT"
    arr = zarr.open_array(store, path="images/ct/0", mode="r")
    assert arr.metadata.dimension_names == ("z", "y", "x")
    assert arr.chunks == (1, 128, 128)  # one slice per chunk
    assert arr.metadata.zarr_format == 3

    ds = xr.open_zarr(store, group="images/ct", consolidated=False)
    assert ds["0"].dims == ("z", "y", "x")
    np.testing.assert_array_equal(ds["0"].values, data)


def test_nifti_round_trip_through_ome_zarr_reader(tmp_path: Path) -> None:
    s = read_nifti(NIB, ["anatomical.nii"])
    store = str(tmp_path / "s")
    _write_series(s, store, "images/anat")
    node = _ngff_nodes(f"{store}/images/anat")[0]
    assert node.data[0].shape == s.data.shape
    ct = node.metadata["coordinateTransformations"][0]
    np.testing.assert_allclose(next(t["scale"] for t in ct if t["type"] == "scale"), s.spacing)
    ds = xr.open_zarr(store, group="images/anat", consolidated=False)
    np.testing.assert_array_equal(ds["0"].values, s.data)


@pytest.mark.parametrize(
    "root, rel",
    [(NIB, "anatomical.nii"), (NIB, "example_nifti2.nii.gz"), (NIB, "example4d.nii.gz")],
)
def test_read_write_open_is_identity(tmp_path: Path, root: Path, rel: str) -> None:
    s = read_nifti(root, [rel])
    store = str(tmp_path / "s")
    _write_series(s, store, "images/x")
    got = S.open_image(store, "images/x")
    assert got.dims == s.axes
    assert got.dtype == s.data.dtype
    np.testing.assert_array_equal(got.values, s.data)
    np.testing.assert_allclose(got.attrs["spacing"], s.spacing)
    np.testing.assert_allclose(got.attrs["origin"], s.origin)
    np.testing.assert_allclose(got.attrs["direction"], s.direction)
    for ax, sp in zip([a for a in s.axes if a != "t"], s.spacing, strict=True):
        np.testing.assert_allclose(got[ax].values, np.arange(got.sizes[ax]) * sp)


def test_shared_round_trips(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "nifti"
    store = str(tmp_path / "s")
    for i, rel in enumerate(
        ["nibabel/anatomical.nii", "nibabel/example_nifti2.nii.gz", "dipy/aniso_vox.nii.gz"]
    ):
        s = read_nifti(root, [rel])
        _write_series(s, store, f"images/{i}")
        got = S.open_image(store, f"images/{i}")
        np.testing.assert_array_equal(got.values, s.data)
        np.testing.assert_allclose(got.attrs["spacing"], s.spacing)
        np.testing.assert_allclose(got.attrs["origin"], s.origin)
        np.testing.assert_allclose(got.attrs["direction"], s.direction)
    assert S.list_groups(store, "images") == ["images/0", "images/1", "images/2"]


def test_ibsi_ct_with_mask_label(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "nifti" / "ibsi_sts" / "STS_002"
    s = read_nifti(root, ["CT_image.nii.gz", "CT_mask.nii.gz"])
    store = str(tmp_path / "s")
    _write_series(s, store, "images/sts002")
    nodes = _ngff_nodes(f"{store}/images/sts002")
    assert any(isinstance(sp, Labels) for n in nodes for sp in n.specs)
    label_nodes = [n for n in nodes if any(isinstance(sp, Label) for sp in n.specs)]
    assert len(label_nodes) == 1
    np.testing.assert_array_equal(label_nodes[0].data[0].compute(), s.labels["mask"])
    labels = S.open_labels(store, "images/sts002")
    np.testing.assert_array_equal(labels["mask"].values, s.labels["mask"])
    np.testing.assert_array_equal(S.open_image(store, "images/sts002").values, s.data)


# ----------------------------------------------------------------- pyramid


def test_levels_are_block_means(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (3, 601, 522)).astype(np.uint16)
    mask = (data > 3000).astype(np.uint8)
    store = str(tmp_path / "s")
    S.write_image(
        data, store=store, path="img", axes="zyx", spacing=(2.0, 0.5, 0.25), labels={"hot": mask}
    )
    assert S.read_attrs(store, "img")["medpipe"]["levels"] == 3  # 601 → 300 → 150
    for level in (1, 2):
        got = S.open_image(store, "img", level=level)
        assert got.attrs["spacing"] == [2.0, 0.5 * 2**level, 0.25 * 2**level]
    lvl1 = S.open_image(store, "img", level=1).values
    np.testing.assert_array_equal(
        lvl1, np.rint(block_reduce(data[:, :600, :522], (1, 2, 2), np.mean)).astype(np.uint16)
    )
    lvl2 = S.open_image(store, "img", level=2).values
    np.testing.assert_array_equal(
        lvl2, np.rint(block_reduce(lvl1[:, :300, :260], (1, 2, 2), np.mean)).astype(np.uint16)
    )
    # coords of every level live in level 0's frame: block centres
    np.testing.assert_allclose(S.open_image(store, "img", level=1)["y"].values[:2], [0.25, 1.25])
    # plain xarray reads one level of a multi-level group (levels differ in size)
    ds = xr.open_zarr(store, group="img", consolidated=False, drop_variables=["1", "2"])
    np.testing.assert_array_equal(ds["0"].values, data)
    lab1 = S.open_labels(store, "img", level=1)["hot"].values
    np.testing.assert_array_equal(lab1, mask[:, :600:2, :522:2])


def test_levels_override_and_small_planes(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    S.write_image(
        np.ones((2, 64, 64), np.float32), store=store, path="a", axes="zyx", spacing=(1, 1, 1)
    )
    assert S.read_attrs(store, "a")["medpipe"]["levels"] == 1
    S.write_image(
        np.ones((2, 64, 64), np.float32),
        store=store,
        path="b",
        axes="zyx",
        spacing=(1, 1, 1),
        levels=3,
    )
    assert S.open_image(store, "b", level=2).shape == (2, 16, 16)


# ----------------------------------------------------------------- properties

_DTYPES = st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])


@st.composite
def _cases(draw):
    colour = draw(st.booleans())
    shape = (
        draw(st.integers(1, 3)) if colour else draw(st.integers(1, 5)),
        draw(st.integers(2, 40)),
        draw(st.integers(2, 40)),
    )
    dtype = np.dtype(draw(_DTYPES))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        data = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    zchunks = tuple(draw(st.integers(1, n)) for n in shape)
    dchunks = draw(st.none() | st.tuples(*(st.integers(1, n) for n in shape)))
    use_dask = draw(st.booleans())
    levels = draw(st.integers(1, 2))
    return data, ("c", "y", "x") if colour else ("z", "y", "x"), zchunks, dchunks, use_dask, levels


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_cases())
def test_write_open_identity(tmp_path_factory: pytest.TempPathFactory, case) -> None:
    data, axes, zchunks, dchunks, use_dask, levels = case
    store = str(tmp_path_factory.mktemp("prop"))
    src = da.from_array(data, chunks=dchunks or zchunks) if use_dask else data
    spacing = (0.5, 0.7) if axes[0] == "c" else (2.0, 0.5, 0.7)
    S.write_image(
        src, store=store, path="images/p", axes=axes, spacing=spacing, chunks=zchunks, levels=levels
    )
    got = S.open_image(store, "images/p")
    assert got.dtype == data.dtype and got.dims == axes
    np.testing.assert_array_equal(got.values, data)
    assert zarr.open_array(store, path="images/p/0", mode="r").chunks == zchunks


# ----------------------------------------------------------------- atomicity


def _failing(shape: tuple[int, ...], chunks: tuple[int, ...]) -> da.Array:
    """A dask array whose last chunk raises when computed (a crash mid-write)."""
    base = da.ones(shape, dtype=np.int16, chunks=chunks)
    last = tuple(len(c) - 1 for c in base.chunks)

    def block(x, block_info=None):
        if tuple(block_info[0]["chunk-location"]) == last:
            raise RuntimeError("disk on fire")
        return x

    return base.map_blocks(block, dtype=np.int16)


def test_crash_mid_write_leaves_nothing(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    with pytest.raises(RuntimeError, match="disk on fire"):
        S.write_image(
            _failing((4, 32, 32), (1, 32, 32)),
            store=store,
            path="images/a",
            axes="zyx",
            spacing=(1, 1, 1),
        )
    assert not S.exists(store, "images/a")
    assert S.list_groups(store, "images") == []
    assert not (tmp_path / "s" / "images" / "a").exists()
    # the writer removes its temporary; chunks still in flight on other threads may
    # re-create parts of it, which clean_temporaries removes
    S.clean_temporaries(store, "images")
    assert [p.name for p in (tmp_path / "s" / "images").iterdir()] == ["zarr.json"]
    with pytest.raises(SeriesNotFoundError):
        S.open_image(store, "images/a")
    data = np.arange(4 * 32 * 32, dtype=np.int16).reshape(4, 32, 32)
    S.write_image(data, store=store, path="images/a", axes="zyx", spacing=(1, 1, 1))
    np.testing.assert_array_equal(S.open_image(store, "images/a").values, data)


def test_crash_while_overwriting_keeps_the_old_series(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    old = np.full((4, 32, 32), 7, np.int16)
    S.write_image(old, store=store, path="images/a", axes="zyx", spacing=(1, 1, 1))
    with pytest.raises(RuntimeError):
        S.write_image(
            _failing((4, 32, 32), (1, 32, 32)),
            store=store,
            path="images/a",
            axes="zyx",
            spacing=(1, 1, 1),
        )
    np.testing.assert_array_equal(S.open_image(store, "images/a").values, old)


def test_killed_writer_leaves_only_a_temporary(tmp_path: Path) -> None:
    """A hard kill (os._exit inside the computation) leaves a .tmp-* that is cleaned."""
    store = str(tmp_path / "s")
    script = textwrap.dedent(f"""
        import os, numpy as np, dask, dask.array as da
        from medpipe import store as S
        base = da.ones((4, 32, 32), dtype=np.int16, chunks=(1, 32, 32))
        def block(x, block_info=None):
            if block_info[0]["chunk-location"][0] == 3:
                os._exit(3)
            return x
        with dask.config.set(scheduler="synchronous"):
            S.write_image(base.map_blocks(block, dtype=np.int16), store={store!r},
                          path="images/a", axes="zyx", spacing=(1, 1, 1))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, env={**os.environ}
    )
    assert proc.returncode == 3, proc.stderr.decode()
    images = tmp_path / "s" / "images"
    assert any(p.name.startswith(".tmp-a-") for p in images.iterdir())
    assert not S.exists(store, "images/a") and S.list_groups(store, "images") == []
    removed = S.clean_temporaries(store, "images")
    assert len(removed) == 1 and removed[0].startswith(".tmp-a-")
    assert [p.name for p in images.iterdir()] == ["zarr.json"]
    S.write_image(
        np.zeros((4, 32, 32), np.int16), store=store, path="images/a", axes="zyx", spacing=(1, 1, 1)
    )
    assert S.exists(store, "images/a")


def test_overwrite_leaves_only_the_new_image(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    S.write_image(
        np.zeros((2, 600, 600), np.uint8),
        store=store,
        path="images/a",
        axes="zyx",
        spacing=(1, 1, 1),
        labels={"m": np.ones((2, 600, 600), np.uint8)},
    )
    new = np.arange(3 * 20 * 30, dtype=np.float32).reshape(3, 20, 30)
    S.write_image(new, store=store, path="images/a", axes="zyx", spacing=(3, 2, 1))
    got = S.open_image(store, "images/a")
    np.testing.assert_array_equal(got.values, new)
    assert got.attrs["levels"] == 1 and got.attrs["spacing"] == [3.0, 2.0, 1.0]
    assert S.open_labels(store, "images/a") == {}
    group = tmp_path / "s" / "images" / "a"
    assert sorted(p.name for p in group.iterdir()) == ["0", "zarr.json"]
    assert sorted(p.name for p in group.parent.iterdir()) == ["a", "zarr.json"]


def test_remove_and_list(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    for name in ("b", "a", "c"):
        S.write_image(
            np.zeros((1, 4, 4), np.uint8),
            store=store,
            path=f"images/{name}",
            axes="zyx",
            spacing=(1, 1, 1),
        )
    assert S.list_groups(store, "images") == ["images/a", "images/b", "images/c"]
    S.remove(store, "images/b")
    S.remove(store, "images/b")  # absent: no error
    assert S.list_groups(store, "images") == ["images/a", "images/c"]
    assert S.list_groups(store, "nothing-here") == []
    # the store root is itself a zarr hierarchy
    assert sorted(zarr.open_group(store, mode="r")["images"].group_keys()) == ["a", "c"]


def test_memory_fsspec_store() -> None:
    data, spacing, origin = _ct_small()
    url = "memory://medpipe-test-store"
    S.write_image(
        da.from_array(data, chunks=(1, 64, 64)),
        store=url,
        path="images/ct",
        axes="zyx",
        spacing=spacing,
        origin=origin,
        labels={"body": (data > -500).astype(np.uint8)},
    )
    S.write_image(
        data,
        store=url,
        path="images/ct",
        axes="zyx",
        spacing=spacing,
        origin=origin,
        labels={"body": (data > -500).astype(np.uint8)},
    )
    assert S.exists(url, "images/ct") and S.list_groups(url, "images") == ["images/ct"]
    np.testing.assert_array_equal(S.open_image(url, "images/ct").values, data)
    np.testing.assert_array_equal(S.open_labels(url, "images/ct")["body"].values, data > -500)
    S.remove(url, "images/ct")
    assert not S.exists(url, "images/ct")


def test_misaligned_dask_chunks_are_rechunked(tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=(5, 50, 40)).astype(np.float32)
    store = str(tmp_path / "s")
    S.write_image(
        da.from_array(data, chunks=(3, 17, 13)),
        store=store,
        path="i",
        axes="zyx",
        spacing=(1, 1, 1),
        chunks=(2, 25, 40),
    )
    np.testing.assert_array_equal(S.open_image(store, "i").values, data)


def test_open_image_is_lazy(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    S.write_image(
        np.zeros((3, 8, 8), np.int16), store=store, path="i", axes="zyx", spacing=(1, 1, 1)
    )
    assert isinstance(S.open_image(store, "i").data, da.Array)


def test_bad_arguments(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    ok = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError):
        S.write_image(ok, store=store, path="i", axes="yxz", spacing=(1, 1, 1))
    with pytest.raises(ValueError):
        S.write_image(ok, store=store, path="i", axes="zyx", spacing=(1, 1))
    with pytest.raises(ValueError):
        S.write_image(
            ok,
            store=store,
            path="i",
            axes="zyx",
            spacing=(1, 1, 1),
            labels={"m": np.zeros((2, 8, 7), np.uint8)},
        )
    assert not S.exists(store, "i")


def test_subgroups_lists_folders_but_not_temporaries(tmp_path: Path) -> None:
    out = str(tmp_path / "s.zarr")
    for name in ("b", "a", ".tmp-c"):
        (tmp_path / "s.zarr" / "features" / name).mkdir(parents=True)
    (tmp_path / "s.zarr" / "features" / "note.txt").write_text("x")
    assert S.subgroups(out, "features") == ["features/a", "features/b"]
    assert S.subgroups(out, "missing") == []
    assert S.list_groups(out, "features") == []  # no complete series among them


def test_write_image_takes_a_dataarray_with_its_geometry(tmp_path: Path) -> None:
    """An opened image is written back as is: dims, spacing, origin, direction travel along."""
    s = read_nifti(NIB, ["anatomical.nii"])
    store = str(tmp_path / "s")
    _write_series(s, store, "images/a")
    image = S.open_image(store, "images/a")
    other = str(tmp_path / "o")
    S.write_image(image, store=store, path="images/b", attrs={"modality": s.modality})
    S.write_image(image.data, store=other, path="images/b", axes=image.dims,
                  spacing=image.attrs["spacing"], origin=image.attrs["origin"],
                  direction=image.attrs["direction"], attrs={"modality": s.modality})
    b, c = S.read_attrs(store, "images/b"), S.read_attrs(other, "images/b")
    assert b["ome"] == c["ome"]
    for k in ("axes", "spacing", "origin", "direction", "shape", "dtype", "levels"):
        assert b["medpipe"][k] == c["medpipe"][k], k
    np.testing.assert_array_equal(S.open_image(store, "images/b").values, s.data)
    with pytest.raises(ValueError, match="axes and spacing"):
        S.write_image(image.data, store=store, path="images/d")
