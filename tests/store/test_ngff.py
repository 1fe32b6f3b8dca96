"""NGFF 0.5 metadata: encode/decode round trip, and what write_image stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medpipe import store as S
from medpipe.geometry import identity_direction
from medpipe.store import ngff

_AXES = st.sampled_from(
    [("z", "y", "x"), ("c", "y", "x"), ("c", "z", "y", "x"), ("t", "z", "y", "x"),
     ("y", "x"), ("t", "c", "z", "y", "x")]
)
_FLOAT = st.floats(-500, 500, allow_nan=False, allow_infinity=False)


@st.composite
def geometries(draw, *, rotated: bool = True) -> ngff.ImageGeometry:
    axes = draw(_AXES)
    n_spatial = sum(a in ngff.SPATIAL for a in axes)
    spacing = tuple(draw(st.floats(0.01, 20)) for _ in range(n_spatial))
    origin = tuple(draw(_FLOAT) for _ in range(3))
    if rotated and draw(st.booleans()):
        seed = draw(st.integers(0, 2**32 - 1))
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
        direction = tuple(tuple(float(v) for v in row) for row in q)
    else:
        direction = tuple(tuple(r) for r in identity_direction())
    levels = draw(st.integers(1, 6))
    return ngff.ImageGeometry(axes, spacing, origin, direction, levels)  # type: ignore[arg-type]


def _close(a: ngff.ImageGeometry, b: ngff.ImageGeometry) -> None:
    assert a.axes == b.axes and a.levels == b.levels
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-12)
    np.testing.assert_allclose(a.origin, b.origin, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.direction, b.direction, rtol=1e-12, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(g=geometries())
def test_decode_inverts_encode(g: ngff.ImageGeometry) -> None:
    ome, exact = ngff.encode(g, name="k")
    _close(ngff.decode({"ome": ome, "medpipe": exact}), g)
    ms = ome["multiscales"][0]
    assert ome["version"] == "0.5" and [a["name"] for a in ms["axes"]] == list(g.axes)
    assert [d["path"] for d in ms["datasets"]] == [str(i) for i in range(g.levels)]
    # level 0's NGFF translation is the origin projected on the (rotated) array axes
    d, o = np.asarray(g.direction), np.asarray(g.origin)
    _, frames = ngff.level_frames(ms)
    for i, a in enumerate(g.axes):
        want = d[ngff.SPATIAL.index(a)] @ o if a in ngff.SPATIAL else 0.0
        np.testing.assert_allclose(frames[0][1][i], want, atol=1e-9)
    # level n: in-plane scale doubles, voxel 0 moves to the centre of its 2^n block
    for level, (scale, trans) in enumerate(frames):
        for i, a in enumerate(g.axes):
            s0 = frames[0][0][i]
            if a in ("y", "x"):
                np.testing.assert_allclose(scale[i], s0 * 2**level)
                np.testing.assert_allclose(trans[i], frames[0][1][i] + (2**level - 1) / 2 * s0)
            else:
                assert scale[i] == s0 and trans[i] == frames[0][1][i]


@settings(max_examples=100, deadline=None)
@given(g=geometries(rotated=False))
def test_axis_aligned_geometry_decodes_from_ngff_alone(g: ngff.ImageGeometry) -> None:
    """Other tools' NGFF images (no medpipe attribute): the translation gives the origin."""
    ome, _ = ngff.encode(g, name="k")
    got = ngff.decode({"ome": ome})
    present = {ngff.SPATIAL.index(a) for a in g.spatial}  # rows of direction present
    # an absent spatial axis (2D colour images have no z) leaves that LPS component at 0
    want = [g.origin[2 - r] if r in present else 0.0 for r in range(3)][::-1]
    _close(got, ngff.ImageGeometry(g.axes, g.spacing, tuple(want), g.direction, g.levels))


def test_invalid_geometry_is_refused() -> None:
    with pytest.raises(ValueError, match="ordered"):
        ngff.encode(ngff.ImageGeometry(("y", "z", "x"), (1, 1, 1)), name="k")
    with pytest.raises(ValueError, match="spatial axis"):
        ngff.encode(ngff.ImageGeometry(("z", "y", "x"), (1, 1)), name="k")
    with pytest.raises(ValueError, match="positive"):
        ngff.encode(ngff.ImageGeometry(("z", "y", "x"), (1, 0, 1)), name="k")
    with pytest.raises(ValueError, match="3×3"):
        ngff.encode(ngff.ImageGeometry(("z", "y", "x"), (1, 1, 1), direction=((1, 0),)), name="k")


def test_write_image_stores_the_encoded_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    g = ngff.ImageGeometry(("z", "y", "x"), (2.0, 0.5, 0.7), (1.0, -2.0, 3.5),
                           tuple(map(tuple, q)), 2)
    store = str(tmp_path / "s")
    S.write_image(np.zeros((2, 8, 8), np.int16), store=store, path="images/k", axes=g.axes,
                  spacing=g.spacing, origin=g.origin, direction=q, levels=2)
    attrs = S.read_attrs(store, "images/k")
    assert attrs["ome"] == ngff.encode(g, name="k")[0]
    _close(ngff.decode(attrs), g)
