"""Shape features: IBSI morphology of a 3-D ROI and a regionprops summary for 2-D masks.

Morphology (IBSI 1 section 3.1) uses a triangle mesh from marching cubes on the
zero-padded mask (iso-level 0.5, physical spacing) for volume, area, diameters and the
density features, and the voxel centres for the principal-component axes, the centre of
mass shift and the spatial autocorrelation (Moran's I, Geary's C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from scipy.special import eval_legendre
from skimage.measure import label, marching_cubes, regionprops

from medpipe.features.autocorrelation import morans_gearys
from medpipe.features.registry import Family, register_family

if TYPE_CHECKING:
    from medpipe.features.config import FeatureConfig
    from medpipe.features.sample import Sample

__all__ = [
    "MORPHOLOGY_NAMES",
    "REGIONPROPS_NAMES",
    "morphology_features",
    "regionprops_features",
]

MORPHOLOGY_NAMES: tuple[str, ...] = tuple(
    f"morph_{n}"
    for n in (
        "volume",
        "voxel_volume",
        "surface_area",
        "surface_to_volume",
        "compactness1",
        "compactness2",
        "spherical_disproportion",
        "sphericity",
        "asphericity",
        "com_shift",
        "max_diameter",
        "major_axis",
        "minor_axis",
        "least_axis",
        "elongation",
        "flatness",
        "volume_density_aabb",
        "area_density_aabb",
        "volume_density_aee",
        "area_density_aee",
        "volume_density_convex_hull",
        "area_density_convex_hull",
        "integrated_intensity",
        "morans_i",
        "gearys_c",
    )
)

#: Voxel count above which Moran's I and Geary's C use the FFT form
#: (:func:`medpipe.features.autocorrelation.morans_gearys`) instead of the O(N^2) pairs.
MAX_AUTOCORRELATION_VOXELS = 4000


def _mesh(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(mask.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(float(s) for s in spacing))
    return verts, faces


def _mesh_volume_area(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    volume = abs(float(np.sum(np.einsum("ij,ij->i", a, np.cross(b, c)))) / 6.0)
    area = float(np.sum(np.linalg.norm(np.cross(b - a, c - a), axis=1)) / 2.0)
    return volume, area


def _ellipsoid_area(a: float, b: float, c: float, *, terms: int = 20) -> float:
    """Surface area of an ellipsoid with semi-axes a >= b >= c (IBSI's Legendre series)."""
    if a <= 0:
        return np.nan
    alpha = np.sqrt(max(1.0 - b**2 / a**2, 0.0))
    beta = np.sqrt(max(1.0 - c**2 / a**2, 0.0))
    if alpha * beta == 0:
        # an ellipsoid of revolution (or sphere): fall back to Knud Thomsen's formula
        pw = 1.6075
        return float(
            4 * np.pi * (((a * b) ** pw + (a * c) ** pw + (b * c) ** pw) / 3.0) ** (1 / pw)
        )
    x = (alpha**2 + beta**2) / (2 * alpha * beta)
    nu = np.arange(terms + 1)
    series = np.sum((alpha * beta) ** nu / (1 - 4 * nu**2) * eval_legendre(nu, x))
    return float(4 * np.pi * a * b * series)


def morphology_features(
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    image: np.ndarray | None = None,
    intensity_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """IBSI morphological features of a 3-D ROI.

    Parameters
    ----------
    mask
        Boolean ROI, dims ``z, y, x`` (a 2-D mask is one slice thick).
    spacing
        Voxel size in mm, ``z, y, x`` order.
    image
        Intensities on the same grid; needed for the centre of mass shift, the integrated
        intensity and Moran's I / Geary's C (NaN without it).
    intensity_mask
        IBSI's intensity mask when re-segmentation made it smaller than ``mask`` (the
        morphological mask): the intensity-weighted centre of mass, the mean of the
        integrated intensity and Moran's I / Geary's C use its voxels.  ``None``: ``mask``.

    Returns
    -------
    dict
        ``morph_<name> -> value`` for every name in :data:`MORPHOLOGY_NAMES`.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 2:
        m = m[None]
    sp = np.asarray(spacing, dtype=np.float64)
    out = dict.fromkeys((n.removeprefix("morph_") for n in MORPHOLOGY_NAMES), np.nan)
    n_vox = int(m.sum())
    if n_vox == 0:
        return {f"morph_{k}": v for k, v in out.items()}
    verts, faces = _mesh(m, sp)
    volume, area = _mesh_volume_area(verts, faces)
    out["volume"] = volume
    out["voxel_volume"] = n_vox * float(np.prod(sp))
    out["surface_area"] = area
    out["surface_to_volume"] = area / volume
    out["compactness1"] = volume / (np.pi**0.5 * area**1.5)
    out["compactness2"] = 36 * np.pi * volume**2 / area**3
    out["spherical_disproportion"] = area / (36 * np.pi * volume**2) ** (1 / 3)
    out["sphericity"] = (36 * np.pi * volume**2) ** (1 / 3) / area
    out["asphericity"] = (area**3 / (36 * np.pi * volume**2)) ** (1 / 3) - 1

    pos = np.argwhere(m) * sp  # voxel centres in mm
    try:
        hull = ConvexHull(verts)
        hull_pts = verts[hull.vertices]
        out["volume_density_convex_hull"] = volume / hull.volume
        out["area_density_convex_hull"] = area / hull.area
    except QhullError:  # flat or degenerate meshes
        hull_pts = verts
    out["max_diameter"] = float(pdist(hull_pts).max()) if len(hull_pts) > 1 else 0.0

    if n_vox > 1:
        lam = np.sort(np.linalg.eigvalsh(np.cov(pos, rowvar=False)))[::-1]
        lam = np.maximum(lam, 0.0)
        out["major_axis"] = 4 * np.sqrt(lam[0])
        out["minor_axis"] = 4 * np.sqrt(lam[1])
        out["least_axis"] = 4 * np.sqrt(lam[2])
        if lam[0] > 0:
            out["elongation"] = float(np.sqrt(lam[1] / lam[0]))
            out["flatness"] = float(np.sqrt(lam[2] / lam[0]))
        a, b, c = (2 * np.sqrt(v) for v in lam)
        v_aee = 4 * np.pi / 3 * a * b * c
        if v_aee > 0:
            out["volume_density_aee"] = volume / v_aee
            out["area_density_aee"] = area / _ellipsoid_area(a, b, c)

    ext = verts.max(axis=0) - verts.min(axis=0)
    out["volume_density_aabb"] = volume / float(np.prod(ext))
    out["area_density_aabb"] = area / float(
        2 * (ext[0] * ext[1] + ext[0] * ext[2] + ext[1] * ext[2])
    )

    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        if img.ndim == 2:
            img = img[None]
        mi = m if intensity_mask is None else np.asarray(intensity_mask, bool).reshape(m.shape)
        x = img[mi]
        pos_i = pos if intensity_mask is None else np.argwhere(mi) * sp
        n_int = int(x.size)
        if n_int:
            out["integrated_intensity"] = float(x.mean()) * volume
        if x.sum() != 0:
            com_geom = pos.mean(axis=0)
            com_gl = (pos_i * x[:, None]).sum(axis=0) / x.sum()
            out["com_shift"] = float(np.linalg.norm(com_geom - com_gl))
        n_vox, pos = n_int, pos_i
        if 1 < n_vox <= MAX_AUTOCORRELATION_VOXELS:
            w = 1.0 / pdist(pos)  # condensed: each unordered pair once
            dev = x - x.mean()
            i, j = np.triu_indices(n_vox, k=1)
            ss = float(np.sum(dev**2))
            if ss > 0:
                out["morans_i"] = n_vox * float(np.sum(w * dev[i] * dev[j])) / (w.sum() * ss)
                out["gearys_c"] = (
                    (n_vox - 1) * float(np.sum(w * (x[i] - x[j]) ** 2)) / (2 * w.sum() * ss)
                )
        elif n_vox > MAX_AUTOCORRELATION_VOXELS:
            out["morans_i"], out["gearys_c"] = morans_gearys(img, mi, spacing=sp)
    return {f"morph_{k}": float(v) for k, v in out.items()}


REGIONPROPS_NAMES: tuple[str, ...] = tuple(
    f"region_{n}"
    for n in (
        "n_components",
        "total_area",
        "area",
        "perimeter",
        "eccentricity",
        "solidity",
        "extent",
        "major_axis",
        "minor_axis",
        "orientation",
        "equivalent_diameter",
        "euler_number",
    )
)


def regionprops_features(
    mask: np.ndarray, *, spacing: Sequence[float] = (1.0, 1.0)
) -> dict[str, float]:
    """A scikit-image ``regionprops`` summary of a 2-D mask.

    The counts (``n_components``, ``total_area`` in mm²) describe the whole mask; the
    other properties are those of its largest connected component (8-connectivity), in
    mm where they are lengths or areas.

    Parameters
    ----------
    mask
        Boolean 2-D mask (a 3-D mask with a single ``z`` plane is accepted).
    spacing
        Pixel size ``(y, x)`` in mm (a 3-element ``z, y, x`` spacing is accepted).

    Returns
    -------
    dict
        ``region_<name> -> value`` for every name in :data:`REGIONPROPS_NAMES`.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 3:
        if m.shape[0] != 1:
            raise ValueError("regionprops_features needs a 2-D mask (or a single z plane)")
        m = m[0]
    sp = tuple(float(s) for s in spacing)[-2:]
    out = dict.fromkeys((n.removeprefix("region_") for n in REGIONPROPS_NAMES), np.nan)
    lab = label(m, connectivity=2)
    props = regionprops(lab, spacing=sp)
    out["n_components"] = float(len(props))
    out["total_area"] = float(m.sum() * sp[0] * sp[1])
    if props:
        r = max(props, key=lambda p: p.area)
        out.update(
            {
                "area": r.area,
                "perimeter": r.perimeter,
                "eccentricity": r.eccentricity,
                "solidity": r.solidity,
                "extent": r.extent,
                "major_axis": r.axis_major_length,
                "minor_axis": r.axis_minor_length,
                "orientation": r.orientation,
                "equivalent_diameter": r.equivalent_diameter_area,
                "euler_number": r.euler_number,
            }
        )
    return {f"region_{k}": float(v) for k, v in out.items()}


def _morphology_names(config: FeatureConfig) -> list[str]:
    return list(MORPHOLOGY_NAMES)


def _morphology(sample: Sample) -> dict[str, float]:
    if sample.morphology_mask is sample.mask:
        return morphology_features(sample.mask, spacing=sample.spacing, image=sample.grey)
    return morphology_features(
        sample.morphology_mask, spacing=sample.spacing, image=sample.grey,
        intensity_mask=sample.mask,
    )


def _regionprops_names(config: FeatureConfig) -> list[str]:
    return list(REGIONPROPS_NAMES)


def _regionprops(sample: Sample) -> dict[str, float]:
    if sample.mask.shape[0] != 1:  # single-slice masks only
        return {}
    return regionprops_features(sample.mask, spacing=sample.spacing)


FAMILY = register_family(Family("morphology", _morphology_names, _morphology))
REGIONPROPS_FAMILY = register_family(
    Family("regionprops", _regionprops_names, _regionprops, needs_roi=False)
)
