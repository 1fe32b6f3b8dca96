"""GLSZM against a voxel-by-voxel flood fill and IBSI's formulas written out on the
matrix, a hand-checked 5 × 5 image, the constant and empty ROI, and the lazy path.

The IBSI digital-phantom rows are in ``test_ibsi_phantom.py``.
"""

from __future__ import annotations

import itertools
from collections import deque

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from medpipe.errors import ConfigError
from medpipe.features import FeatureConfig, compute_features, extract
from medpipe.features.discretise import discretise_image
from medpipe.features.glszm import FEATURES, glszm_feature_names, glszm_features, glszm_matrices
from medpipe.features.zones import ZONE_AGGREGATIONS

AGGS = tuple(ZONE_AGGREGATIONS)


# ----------------------------------------------------------------- slow references


def reference_zones(levels: np.ndarray, *, per_slice: bool) -> list[list[tuple[int, ...]]]:
    """Zones by breadth-first flood fill, one voxel at a time: 26-connected in 3-D,
    8-connected within a slice (``per_slice``)."""
    shape = levels.shape
    steps = [
        s
        for s in itertools.product((-1, 0, 1), repeat=3)
        if s != (0, 0, 0) and not (per_slice and s[0] != 0)
    ]
    seen = np.zeros(shape, bool)
    zones = []
    for p in np.ndindex(shape):
        if levels[p] == 0 or seen[p]:
            continue
        zone, todo = [], deque([p])
        seen[p] = True
        while todo:
            q = todo.popleft()
            zone.append(q)
            for s in steps:
                r = tuple(a + b for a, b in zip(q, s, strict=True))
                inside = all(0 <= c < n for c, n in zip(r, shape, strict=True))
                if inside and not seen[r] and levels[r] == levels[p]:
                    seen[r] = True
                    todo.append(r)
        zones.append(zone)
    return zones


def reference_matrix(levels: np.ndarray, zones: list, value, ng: int, nv: int) -> np.ndarray:
    """``m[i - 1, value(zone) - 1]`` counted zone by zone."""
    m = np.zeros((ng, nv))
    for zone in zones:
        m[levels[zone[0]] - 1, value(zone) - 1] += 1
    return m


def reference_features(m: np.ndarray, n_voxels: int) -> list[float]:
    """IBSI 3.8 / 3.9's sixteen formulas, term by term on the matrix ``m[i, j]``."""
    ng, nj = m.shape
    ns = m.sum()
    cells = [(i + 1, j + 1, m[i, j]) for i in range(ng) for j in range(nj) if m[i, j]]
    mi = [m[i].sum() for i in range(ng)]
    mj = [m[:, j].sum() for j in range(nj)]
    mu_i = sum(i * c for i, _, c in cells) / ns
    mu_j = sum(j * c for _, j, c in cells) / ns
    return [
        sum(c / j**2 for i, j, c in cells) / ns,
        sum(c * j**2 for i, j, c in cells) / ns,
        sum(c / i**2 for i, j, c in cells) / ns,
        sum(c * i**2 for i, j, c in cells) / ns,
        sum(c / (i**2 * j**2) for i, j, c in cells) / ns,
        sum(c * i**2 / j**2 for i, j, c in cells) / ns,
        sum(c * j**2 / i**2 for i, j, c in cells) / ns,
        sum(c * i**2 * j**2 for i, j, c in cells) / ns,
        sum(x**2 for x in mi) / ns,
        sum(x**2 for x in mi) / ns**2,
        sum(x**2 for x in mj) / ns,
        sum(x**2 for x in mj) / ns**2,
        ns / n_voxels,
        sum((i - mu_i) ** 2 * c / ns for i, j, c in cells),
        sum((j - mu_j) ** 2 * c / ns for i, j, c in cells),
        -sum(c / ns * np.log2(c / ns) for i, j, c in cells),
    ]


def reference_aggregations(levels: np.ndarray, matrices) -> dict[str, list[float]]:
    """IBSI's 3D (one volume matrix), 2D (per slice, averaged) and 2.5D (slices merged)."""
    m3, m2 = matrices(levels, False), matrices(levels, True)
    counts = [(levels[z] > 0).sum() for z in range(levels.shape[0])]
    per_slice = [reference_features(m, n) for m, n in zip(m2, counts, strict=True) if n]
    return {
        "3d_merged": reference_features(m3, (levels > 0).sum()),
        "2d_averaged": list(np.mean(per_slice, axis=0)),
        "2_5d_merged": reference_features(sum(m2), (levels > 0).sum()),
    }


def random_levels(seed: int, shape=(4, 7, 8), ng: int = 3, holes: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lv = rng.integers(1, ng + 1, size=shape).astype(np.int32)
    lv[rng.random(shape) < holes] = 0  # holes in the ROI split zones
    return lv


def _size_matrices(levels: np.ndarray, per_slice: bool) -> np.ndarray:
    ng = int(levels.max())
    if per_slice:
        out = []
        for z in range(levels.shape[0]):
            one = np.zeros_like(levels)
            one[z] = levels[z]
            out.append(_size_matrices(one, False))
        return np.array(out)
    zones = reference_zones(levels, per_slice=False)
    return reference_matrix(levels, zones, len, ng, levels.size)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrices_match_flood_fill(seed: int) -> None:
    lv = random_levels(seed)
    ng = 3
    m3 = glszm_matrices(lv, n_levels=ng)
    ref3 = reference_matrix(lv, reference_zones(lv, per_slice=False), len, ng, m3.shape[1])
    np.testing.assert_array_equal(m3, ref3)
    m2 = glszm_matrices(lv, n_levels=ng, per_slice=True)
    zones2 = reference_zones(lv, per_slice=True)
    for z in range(lv.shape[0]):
        in_z = [zone for zone in zones2 if zone[0][0] == z]
        np.testing.assert_array_equal(m2[z], reference_matrix(lv, in_z, len, ng, m2.shape[2]))
    # every ROI voxel is in exactly one zone
    voxels_3d = (m3 * np.arange(1, m3.shape[-1] + 1)).sum()
    voxels_2d = (m2 * np.arange(1, m2.shape[-1] + 1)).sum()
    assert voxels_3d == voxels_2d == (lv > 0).sum()


@pytest.mark.parametrize("seed", [3, 4])
def test_features_match_formulas_on_the_matrix(seed: int) -> None:
    lv = random_levels(seed, shape=(3, 6, 6), ng=4, holes=0.15)
    got = glszm_features(lv)
    ref = reference_aggregations(lv, _size_matrices)
    for agg in AGGS:
        values = [got[f"glszm_{f}_{agg}"] for f in FEATURES]
        np.testing.assert_allclose(values, ref[agg], rtol=1e-12, err_msg=agg)
    assert list(got) == glszm_feature_names()


#: pyradiomics's documented GLSZM example (8-connected, one slice), checked by hand:
#: level 1 one zone of 4; level 2 zones of 1 and 5 (diagonal links); level 3 of 1, 3, 5;
#: level 4 of 1 and 2; level 5 three single voxels.
HAND = np.array(
    [
        [5, 2, 5, 4, 4],
        [3, 3, 3, 1, 3],
        [2, 1, 1, 1, 3],
        [4, 2, 2, 2, 3],
        [3, 5, 3, 3, 2],
    ]
)
HAND_GLSZM = np.array(
    [
        [0, 0, 0, 1, 0],
        [1, 0, 0, 0, 1],
        [1, 0, 1, 0, 1],
        [1, 1, 0, 0, 0],
        [3, 0, 0, 0, 0],
    ]
)


def test_hand_checked_example() -> None:
    np.testing.assert_array_equal(glszm_matrices(HAND), HAND_GLSZM)
    np.testing.assert_array_equal(glszm_matrices(HAND, per_slice=True)[0], HAND_GLSZM)
    got = glszm_features(HAND)
    ns = 11
    # one slice: the 3-D zones are the 2-D ones, and all three aggregations agree
    for agg in AGGS:
        assert got[f"glszm_sze_{agg}"] == pytest.approx(
            (1 / 16 + 1 + 1 / 25 + 1 + 1 / 9 + 1 / 25 + 1 + 1 / 4 + 3) / ns
        )
        assert got[f"glszm_lze_{agg}"] == pytest.approx(
            (16 + 1 + 25 + 1 + 9 + 25 + 1 + 4 + 3) / ns
        )
        assert got[f"glszm_glnu_{agg}"] == pytest.approx((1 + 4 + 9 + 4 + 9) / ns)
        assert got[f"glszm_zsnu_{agg}"] == pytest.approx((6**2 + 1 + 1 + 1 + 2**2) / ns)
        assert got[f"glszm_z_perc_{agg}"] == pytest.approx(ns / 25)


def test_constant_roi_gives_the_documented_values() -> None:
    lv = np.zeros((5, 6, 6), np.int32)
    lv[1:4, 1:4, 1:4] = 2  # one 27-voxel zone; 9-voxel zones in each of 3 slices
    got = glszm_features(lv)
    for agg, n, zones in (("3d_merged", 27, 1), ("2d_averaged", 9, 1), ("2_5d_merged", 9, 3)):
        nv = 27 if agg != "2d_averaged" else 9
        expected = {
            "sze": 1 / n**2, "lze": n**2, "lgze": 1 / 4, "hgze": 4,
            "szlge": 1 / (4 * n**2), "szhge": 4 / n**2, "lzlge": n**2 / 4, "lzhge": 4 * n**2,
            "glnu": zones, "glnu_norm": 1, "zsnu": zones, "zsnu_norm": 1,
            "z_perc": zones / nv, "gl_var": 0, "zs_var": 0, "zs_entr": 0,
        }
        for f, v in expected.items():
            assert got[f"glszm_{f}_{agg}"] == pytest.approx(v, abs=1e-12), (f, agg)


def test_empty_roi_is_nan() -> None:
    got = glszm_features(np.zeros((3, 4, 4), np.int32))
    assert len(got) == len(FEATURES) * len(AGGS) and all(np.isnan(v) for v in got.values())
    cfg = FeatureConfig(families=("glszm",))
    out = compute_features(np.ones((3, 4, 4)), np.zeros((3, 4, 4), bool), spacing=(1, 1, 1),
                           config=cfg)
    assert list(out) == cfg.feature_names() and all(np.isnan(v) for v in out.values())


def test_config_aggregations() -> None:
    cfg = FeatureConfig(families=("glszm",), glszm_aggregations=("2_5d_merged",))
    assert cfg.feature_names() == [f"glszm_{f}_2_5d_merged" for f in FEATURES]
    assert cfg.hash() != FeatureConfig(families=("glszm",)).hash()
    # at its default the field is not hashed, so older configs keep their hash
    assert "glszm_aggregations" not in FeatureConfig().canonical_json()
    assert "glszm_aggregations" in cfg.canonical_json()
    assert FeatureConfig.from_dict(cfg.model_dump()) == cfg
    # the keys the other matrix families use for the same IBSI aggregations (3D: 3d_merged)
    assert FeatureConfig(glszm_aggregations=("3d_merged",)).glszm_aggregations == ("3d_merged",)
    with pytest.raises(ConfigError, match="glszm_aggregations: unknown aggregation"):
        FeatureConfig(glszm_aggregations=("3d_averaged",))
    with pytest.raises(ValueError, match="unknown GLSZM aggregation"):
        glszm_features(HAND, aggregations=("2d",))


def test_lazy_extract_matches_direct_features() -> None:
    """Both zone families through :func:`extract` (cropped, chunked) = the functions on the
    whole discretised image."""
    from medpipe.features.gldzm import gldzm_features

    rng = np.random.default_rng(7)
    vol = rng.normal(size=(6, 20, 24)).cumsum(axis=2)
    roi = np.zeros(vol.shape, bool)
    roi[1:5, 3:15, 4:20] = rng.random((4, 12, 16)) > 0.1
    cfg = FeatureConfig(families=("glszm", "gldzm"), bin_count=6)
    dims = ("z", "y", "x")
    image = xr.DataArray(
        da.from_array(vol, chunks=(3, 10, 12)), dims=dims, attrs={"spacing": (2.0, 1.0, 1.0)}
    )
    mask = xr.DataArray(da.from_array(roi.astype(np.uint8), chunks=(2, 7, 24)), dims=dims)
    with dask.config.set(scheduler="sync"):
        ds = extract([("s", image, {"roi": mask})], config=cfg)
        got = ds.features.compute().values[0]
    lv = discretise_image(vol, roi, bin_count=6)
    ref = {**glszm_features(lv), **gldzm_features(lv)}
    np.testing.assert_allclose(got, [ref[n] for n in cfg.feature_names()], rtol=1e-12)
    assert np.isfinite(got).all()


#: pyradiomics's GLSZM → medpipe (same definitions; pyradiomics's GLSZM is IBSI's "3D")
PYRADIOMICS_GLSZM = {
    "SmallAreaEmphasis": "sze",
    "LargeAreaEmphasis": "lze",
    "LowGrayLevelZoneEmphasis": "lgze",
    "HighGrayLevelZoneEmphasis": "hgze",
    "SmallAreaLowGrayLevelEmphasis": "szlge",
    "SmallAreaHighGrayLevelEmphasis": "szhge",
    "LargeAreaLowGrayLevelEmphasis": "lzlge",
    "LargeAreaHighGrayLevelEmphasis": "lzhge",
    "GrayLevelNonUniformity": "glnu",
    "GrayLevelNonUniformityNormalized": "glnu_norm",
    "SizeZoneNonUniformity": "zsnu",
    "SizeZoneNonUniformityNormalized": "zsnu_norm",
    "ZonePercentage": "z_perc",
    "GrayLevelVariance": "gl_var",
    "ZoneVariance": "zs_var",
    "ZoneEntropy": "zs_entr",
}


@pytest.mark.parametrize("column", ["", "_2d"])
@pytest.mark.parametrize("case", ["brain1", "brain2", "breast1"])
def test_pyradiomics_baseline(shared_data, case: str, column: str) -> None:
    """Secondary check on real MR/CT cases: pyradiomics's published GLSZM baseline (bin
    width 25 from ``floor(min / 25) * 25``, as in ``test_pyradiomics_baseline.py``).
    pyradiomics's 3-D GLSZM is IBSI's 3D; its ``force2D`` one (slices along z, their
    matrices summed: the ``_2d`` columns) is IBSI's 2.5D."""
    import ast
    import csv
    import math

    nrrd = pytest.importorskip("nrrd", reason="pynrrd (dev extra) reads the NRRD test cases")
    root = shared_data / "reference" / "pyradiomics" / "data"
    path = root / "baseline" / "baseline_glszm.csv"
    if not path.is_file():
        pytest.skip(f"pyradiomics baseline not found: {path}")
    with open(path, newline="", encoding="utf-8") as fh:
        table = {r["featureName"]: r[case + column] for r in csv.DictReader(fh)}
    settings = ast.literal_eval(table["diagnostics_Configuration_Settings"])
    assert settings.get("binWidth", 25) == 25 and settings["resegmentRange"] is None
    assert settings["resampledPixelSpacing"] is None and settings["force2D"] == (column == "_2d")
    assert settings["force2Ddimension"] == 0  # (z, y, x) arrays: slices along z
    agg = "2_5d_merged" if column else "3d_merged"
    img, _ = nrrd.read(str(root / f"{case}_image.nrrd"))
    lab, _ = nrrd.read(str(root / f"{case}_label.nrrd"))
    image = np.transpose(img, (2, 1, 0)).astype(np.float64)
    mask = np.transpose(lab, (2, 1, 0)) == 1
    lo = math.floor(float(image[mask].min()) / 25) * 25
    got = glszm_features(
        discretise_image(image, mask, bin_width=25, min_value=lo), aggregations=(agg,)
    )
    bad = {}
    for pname, name in PYRADIOMICS_GLSZM.items():
        ref = float(table[f"original_glszm_{pname}"])
        if not np.isclose(got[f"glszm_{name}_{agg}"], ref, rtol=1e-6, atol=1e-12):
            bad[pname] = (ref, got[f"glszm_{name}_{agg}"])
    assert not bad, bad


def test_feature_stack_with_huge_keys() -> None:
    """Levels too large for one int64 key per cell take the slower exact path: the
    features of counts alone (non-uniformities, entropy, size emphasis) are unchanged."""
    from medpipe.features.zones import FORMULAS, zone_feature_stack

    rng = np.random.default_rng(8)
    level = rng.integers(1, 4, size=200)
    value = rng.integers(1, 6, size=200)
    group = rng.integers(0, 3, size=200)
    nv = np.array([500, 400, 300])
    small = zone_feature_stack(level, value, group, n_groups=3, n_voxels=nv)
    huge = zone_feature_stack(np.array([0, 1, 2**40, 2**41])[level], value, group,
                              n_groups=3, n_voxels=nv)
    for f in ("se", "le", "glnu", "glnu_norm", "nu", "nu_norm", "z_perc", "var", "entr"):
        np.testing.assert_allclose(huge[f], small[f], rtol=1e-12, err_msg=f)
    for agg in (0, 1, 2):  # and the fast path against the matrix formulas
        m = np.zeros((3, 5))
        np.add.at(m, (level[group == agg] - 1, value[group == agg] - 1), 1)
        got = [small[f][agg] for f in FORMULAS]
        np.testing.assert_allclose(got, reference_features(m, nv[agg]), rtol=1e-12)
