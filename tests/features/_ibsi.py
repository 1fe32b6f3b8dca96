"""The IBSI-1 digital phantom table: reference rows ↔ medpipe feature names.

Used by ``test_ibsi_phantom.py`` and runnable on its own to print the comparison::

    .venv/bin/python -m tests.features._ibsi

The CT section (``ct_*``) serves ``test_ibsi_ct_phantom.py``: configurations A–E of
IBSI's CT phantom (``python -m tests.features._ibsi ct [A B …]`` prints the rows out of
tolerance).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medpipe.features import FeatureConfig, compute_features
from medpipe.features.glcm import AGGREGATIONS, FEATURES
from medpipe.features.gldzm import FEATURES as GLDZM_FEATURES
from medpipe.features.glrlm import FEATURES as GLRLM_FEATURES
from medpipe.features.glszm import FEATURES as GLSZM_FEATURES
from medpipe.features.ibsi_processing import IBSIProcessing, ProcessedROI, process_roi  # ct
from medpipe.features.ngldm import FEATURES as NGLDM_FEATURES  # neigh
from medpipe.features.ngtdm import FEATURES as NGTDM_FEATURES  # neigh
from medpipe.features.zones import ZONE_AGGREGATIONS

_STAT = {
    "Mean intensity": "mean",
    "Intensity variance": "variance",
    "Intensity skewness": "skewness",
    "(Excess) intensity kurtosis": "kurtosis",
    "Median intensity": "median",
    "Minimum intensity": "minimum",
    "10\\ :sup:`th` intensity percentile": "p10",
    "90\\ :sup:`th` intensity percentile": "p90",
    "Maximum intensity": "maximum",
    "Intensity interquartile range": "iqr",
    "Intensity range": "range",
    "Intensity-based mean absolute deviation": "mad",
    "Intensity-based robust mean absolute deviation": "robust_mad",
    "Intensity-based median absolute deviation": "median_ad",
    "Intensity-based coefficient of variation": "cov",
    "Intensity-based quartile coefficient of dispersion": "qcod",
    "Intensity-based energy": "energy",
    "Root mean square intensity": "rms",
}
_IH = {
    "Mean discretised intensity": "mean",
    "Discretised intensity variance": "variance",
    "Discretised intensity skewness": "skewness",
    "(Excess) discretised intensity kurtosis": "kurtosis",
    "Median discretised intensity": "median",
    "Minimum discretised intensity": "minimum",
    "10\\ :sup:`th` discretised intensity percentile": "p10",
    "90\\ :sup:`th` discretised intensity percentile": "p90",
    "Maximum discretised intensity": "maximum",
    "Intensity histogram mode": "mode",
    "Discretised intensity interquartile range": "iqr",
    "Discretised intensity range": "range",
    "Intensity histogram mean absolute deviation": "mad",
    "Intensity histogram robust mean absolute deviation": "robust_mad",
    "Intensity histogram median absolute deviation": "median_ad",
    "Intensity histogram coefficient of variation": "cov",
    "Intensity histogram quartile coefficient of dispersion": "qcod",
    "Discretised intensity entropy": "entropy",
    "Discretised intensity uniformity": "uniformity",
    "Maximum histogram gradient": "max_gradient",
    "Maximum histogram gradient intensity": "max_gradient_level",
    "Minimum histogram gradient": "min_gradient",
    "Minimum histogram gradient intensity": "min_gradient_level",
}
_GLCM = dict(
    zip(
        (
            "Joint maximum",
            "Joint average",
            "Joint variance",
            "Joint entropy",
            "Difference average",
            "Difference variance",
            "Difference entropy",
            "Sum average",
            "Sum variance",
            "Sum entropy",
            "Angular second moment",
            "Contrast",
            "Dissimilarity",
            "Inverse difference",
            "Normalised inverse difference",
            "Inverse difference moment",
            "Normalised inverse difference moment",
            "Inverse variance",
            "Correlation",
            "Autocorrelation",
            "Cluster tendency",
            "Cluster shade",
            "Cluster prominence",
            "Information correlation 1",
            "Information correlation 2",
        ),
        FEATURES,
        strict=True,
    )
)
_GLRLM = dict(
    zip(
        (
            "Short runs emphasis",
            "Long runs emphasis",
            "Low grey level run emphasis",
            "High grey level run emphasis",
            "Short run low grey level emphasis",
            "Short run high grey level emphasis",
            "Long run low grey level emphasis",
            "Long run high grey level emphasis",
            "Grey level non-uniformity",
            "Normalised grey level non-uniformity",
            "Run length non-uniformity",
            "Normalised run length non-uniformity",
            "Run percentage",
            "Grey level variance",
            "Run length variance",
            "Run entropy",
        ),
        GLRLM_FEATURES,
        strict=True,
    )
)
_MORPH = {
    "Volume (mesh)": "volume",
    "Volume (voxel counting)": "voxel_volume",
    "Surface area (mesh)": "surface_area",
    "Surface to volume ratio": "surface_to_volume",
    "Compactness 1": "compactness1",
    "Compactness 2": "compactness2",
    "Spherical disproportion": "spherical_disproportion",
    "Sphericity": "sphericity",
    "Asphericity": "asphericity",
    "Centre of mass shift": "com_shift",
    "Maximum 3D diameter": "max_diameter",
    "Major axis length": "major_axis",
    "Minor axis length": "minor_axis",
    "Least axis length": "least_axis",
    "Elongation": "elongation",
    "Flatness": "flatness",
    "Volume density (axis-aligned bounding box)": "volume_density_aabb",
    "Area density (axis-aligned bounding box)": "area_density_aabb",
    "Volume density (approximate enclosing ellipsoid)": "volume_density_aee",
    "Area density (approximate enclosing ellipsoid)": "area_density_aee",
    "Volume density (convex hull)": "volume_density_convex_hull",
    "Area density (convex hull)": "area_density_convex_hull",
    "Integrated intensity": "integrated_intensity",
    "Moran’s I index": "morans_i",
    "Geary’s C measure": "gearys_c",
}
# --------------------------------------------------------------------------- zones
# GLSZM (IBSI 1 section 3.8) and GLDZM (3.9); IBSI's aggregation names are "2D", "2.5D"
# and "3D" (medpipe.features.zones.ZONE_AGGREGATIONS).
_GLSZM = dict(
    zip(
        (
            "Small zone emphasis",
            "Large zone emphasis",
            "Low grey level zone emphasis",
            "High grey level zone emphasis",
            "Small zone low grey level emphasis",
            "Small zone high grey level emphasis",
            "Large zone low grey level emphasis",
            "Large zone high grey level emphasis",
            "Grey level non-uniformity",
            "Normalised grey level non-uniformity",
            "Zone size non-uniformity",
            "Normalised zone size non-uniformity",
            "Zone percentage",
            "Grey level variance",
            "Zone size variance",
            "Zone size entropy",
        ),
        GLSZM_FEATURES,
        strict=True,
    )
)
_GLDZM = dict(
    zip(
        (
            "Small distance emphasis",
            "Large distance emphasis",
            "Low grey level zone emphasis",
            "High grey level zone emphasis",
            "Small distance low grey level emphasis",
            "Small distance high grey level emphasis",
            "Large distance low grey level emphasis",
            "Large distance high grey level emphasis",
            "Grey level non-uniformity",
            "Normalised grey level non-uniformity",
            "Zone distance non-uniformity",
            "Normalised zone distance non-uniformity",
            "Zone percentage",
            "Grey level variance",
            "Zone distance variance",
            "Zone distance entropy",
        ),
        GLDZM_FEATURES,
        strict=True,
    )
)
_ZONE_AGG = {v: k for k, v in ZONE_AGGREGATIONS.items()}
_ZONE_FAMILIES = {
    "Grey level size zone based features": ("glszm", _GLSZM),
    "Grey level distance zone based features": ("gldzm", _GLDZM),
}


def _zone_name(family: str, feature: str, aggregation: str) -> str | None:
    prefix, names = _ZONE_FAMILIES.get(family, ("", {}))
    if feature in names and aggregation in _ZONE_AGG:
        return f"{prefix}_{names[feature]}_{_ZONE_AGG[aggregation]}"
    return None


# ------------------------------------------------------------------------- end zones
_AGG = {v: k for k, v in AGGREGATIONS.items()}

# --- neigh: NGTDM, NGLDM, intensity-volume histogram, local intensity (IBSI 3.10, 3.11,
# 3.5, 3.2) ------------------------------------------------------------------------------
_NEIGH_AGG = {"2D": "2d_averaged", "2.5D": "2_5d_merged", "3D": "3d_merged"}
_NEIGH_MATRIX = {
    "Neighbourhood grey tone difference based features": (
        "ngtdm",
        dict(
            zip(
                ("Coarseness", "Contrast", "Busyness", "Complexity", "Strength"),
                NGTDM_FEATURES,
                strict=True,
            )
        ),
    ),
    "Neighbouring grey level dependence based features": (
        "ngldm",
        dict(
            zip(
                (
                    "Low dependence emphasis",
                    "High dependence emphasis",
                    "Low grey level count emphasis",
                    "High grey level count emphasis",
                    "Low dependence low grey level emphasis",
                    "Low dependence high grey level emphasis",
                    "High dependence low grey level emphasis",
                    "High dependence high grey level emphasis",
                    "Grey level non-uniformity",
                    "Normalised grey level non-uniformity",
                    "Dependence count non-uniformity",
                    "Normalised dependence count non-uniformity",
                    "Dependence count percentage",
                    "Grey level variance",
                    "Dependence count variance",
                    "Dependence count entropy",
                    "Dependence count energy",
                ),
                NGLDM_FEATURES,
                strict=True,
            )
        ),
    ),
}
# IVH rows repeat the feature name; IBSI lists x = 10 % before x = 90 %
_NEIGH_IVH = {
    "Volume at intensity fraction": ("ivh_v10", "ivh_v90"),
    "Intensity at volume fraction": ("ivh_i10", "ivh_i90"),
    "Volume fraction difference between intensity fractions": ("ivh_v10_minus_v90",),
    "Intensity fraction difference between volume fractions": ("ivh_i10_minus_i90",),
    "Area under the IVH curve": ("ivh_auc",),
}
_NEIGH_PEAKS = {"Local intensity peak": "peaks_local", "Global intensity peak": "peaks_global"}
#: families and settings the phantom config adds for these families
NEIGH_FAMILIES = ("ngtdm", "ngldm", "ivh", "peaks")
NEIGH_SETTINGS = {
    "ngtdm_aggregations": tuple(_NEIGH_AGG.values()),
    "ngldm_aggregations": tuple(_NEIGH_AGG.values()),
}


def _neigh_name(family: str, feature: str, aggregation: str, nth: int) -> str | None:
    """medpipe name of a row of these families; ``nth``: earlier rows of the same key."""
    if family in _NEIGH_MATRIX and aggregation in _NEIGH_AGG:
        prefix, names = _NEIGH_MATRIX[family]
        if feature in names:
            return f"{prefix}_{names[feature]}_{_NEIGH_AGG[aggregation]}"
    if family == "Intensity-volume histogram features" and feature in _NEIGH_IVH:
        names = _NEIGH_IVH[feature]
        return names[nth] if nth < len(names) else None
    if family == "Local intensity features":
        return _NEIGH_PEAKS.get(feature)
    return None


# --- end neigh ---------------------------------------------------------------------------

#: The medpipe config that reproduces IBSI's digital phantom setting (no discretisation).
PHANTOM_CONFIG = FeatureConfig(
    families=("firstorder", "histogram", "glcm", "glrlm", "morphology", "glszm", "gldzm",
              *NEIGH_FAMILIES),
    bin_count=None,
    glcm_aggregations=tuple(AGGREGATIONS),
    glrlm_aggregations=tuple(AGGREGATIONS),
    glszm_aggregations=tuple(ZONE_AGGREGATIONS),  # zones
    gldzm_aggregations=tuple(ZONE_AGGREGATIONS),  # zones
    **NEIGH_SETTINGS,
)


@dataclass(frozen=True)
class Row:
    family: str
    feature: str
    aggregation: str
    expected: float
    tolerance: float
    name: str | None  # medpipe feature name; None when not implemented

    @property
    def id(self) -> str:
        agg = f"[{self.aggregation}]" if self.aggregation else ""
        zones = _ZONE_FAMILIES.get(self.family)  # zones: GLSZM/GLDZM share feature names
        short = zones[0].upper() if zones else self.family.split()[0]
        return f"{short}:{self.feature}{agg}".replace(" ", "_")


def _rounding_tolerance(value: float) -> float:
    """IBSI quotes phantom values to 3 significant digits: allow half a unit of the 3rd."""
    if value == 0:
        return 5e-4
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 2) * (1 + 1e-9)


def _name(family: str, feature: str, aggregation: str) -> str | None:
    if family == "Intensity-based statistical features" and feature in _STAT:
        return f"firstorder_{_STAT[feature]}"
    if family == "Intensity histogram features" and feature in _IH:
        return f"ih_{_IH[feature]}"
    if family == "Grey level co-occurrence based features" and feature in _GLCM:
        return f"glcm_{_GLCM[feature]}_{_AGG[aggregation]}"
    if family == "Grey level run length based features" and feature in _GLRLM:
        return f"glrlm_{_GLRLM[feature]}_{_AGG[aggregation]}"
    if family == "Morphological features" and feature in _MORPH:
        return f"morph_{_MORPH[feature]}"
    if family in _ZONE_FAMILIES:  # zones
        return _zone_name(family, feature, aggregation)
    return None


def reference_rows(csv_path: Path, data: str = "dig. phantom") -> list[Row]:
    """Every row of the reference table for ``data`` (implemented or not).

    ``data`` is the CSV's data set: ``"dig. phantom"`` or ``"config. A"`` … ``"config. E"``
    (the CT phantom); rows without a published value are left out.
    """
    rows = []
    seen: dict[tuple[str, str, str], int] = {}  # rows repeating a key (IVH V10, V90)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["data"] != data or not r["value"]:
                continue
            key = (r["family"], r["feature"], r["aggregation"])
            nth = seen[key] = seen.get(key, -1) + 1
            value = float(r["value"])
            tol = float(r["tolerance"]) if r["tolerance"] else _rounding_tolerance(value)
            rows.append(
                Row(
                    r["family"],
                    r["feature"],
                    r["aggregation"],
                    value,
                    tol,
                    _name(*key) or _neigh_name(*key, nth),
                )
            )
    return rows


def load_phantom(data_root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Phantom image, mask (``z, y, x``) and spacing (mm, ``z, y, x``) from the NIfTI files."""
    d = data_root / "reference" / "ibsi1_digital_phantom"
    img = nib.load(d / "phantom.nii.gz")
    msk = nib.load(d / "mask.nii.gz")
    # NIfTI stores (x, y, z); medpipe works in (z, y, x)
    image = np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float64)
    mask = np.transpose(np.asanyarray(msk.dataobj), (2, 1, 0)) > 0
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3][::-1])
    return image, mask, spacing


def phantom_features(data_root: Path) -> dict[str, float]:
    """medpipe's features of the digital phantom with :data:`PHANTOM_CONFIG`."""
    image, mask, spacing = load_phantom(data_root)
    return compute_features(image, mask, spacing=spacing, config=PHANTOM_CONFIG)


def table(data_root: Path) -> tuple[str, dict[str, tuple[int, int, int]]]:
    """The comparison table as text, and per family (passed, failed, not implemented)."""
    feats = phantom_features(data_root)
    lines = [f"{'feature':<58} {'aggregation':<24} {'expected':>10} {'got':>10} {'pass':>5}"]
    summary: dict[str, list[int]] = {}
    for r in reference_rows(data_root / "reference" / "ibsi1_reference_values.csv"):
        s = summary.setdefault(r.family, [0, 0, 0])
        if r.name is None:
            s[2] += 1
            got, ok = "n/a", "-"
        else:
            v = feats[r.name]
            passed = abs(v - r.expected) <= r.tolerance
            s[0 if passed else 1] += 1
            got, ok = f"{v:10.4g}", "yes" if passed else "NO"
        lines.append(
            f"{r.feature[:58]:<58} {r.aggregation:<24} {r.expected:10.4g} {got:>10} {ok:>5}"
        )
    lines.append("")
    lines.append(f"{'family':<58} {'passed':>7} {'failed':>7} {'not impl.':>10}")
    for fam, (p, f, n) in summary.items():
        lines.append(f"{fam:<58} {p:>7} {f:>7} {n:>10}")
    return "\n".join(lines), {k: tuple(v) for k, v in summary.items()}


# --- ct: IBSI's CT phantom under configurations A-E (IBSI 1 chapter 5) -----------------
CT_CONFIGS = ("A", "B", "C", "D", "E")
_ALL_FAMILIES = ("firstorder", "histogram", "glcm", "glrlm", "morphology", "glszm", "gldzm",
                 *NEIGH_FAMILIES)
_2D = {  # 2D configurations: slice-wise texture, IBSI's 2D and 2.5D aggregations
    "glcm_aggregations": ("2d_averaged", "2d_slicemerged", "2_5d_directionmerged",
                          "2_5d_merged"),
    "glrlm_aggregations": ("2d_averaged", "2d_slicemerged", "2_5d_directionmerged",
                           "2_5d_merged"),
    "glszm_aggregations": ("2d_averaged", "2_5d_merged"),
    "gldzm_aggregations": ("2d_averaged", "2_5d_merged"),
    "ngtdm_aggregations": ("2d_averaged", "2_5d_merged"),
    "ngldm_aggregations": ("2d_averaged", "2_5d_merged"),
}
_3D = {
    "glcm_aggregations": ("3d_merged", "3d_averaged"),
    "glrlm_aggregations": ("3d_merged", "3d_averaged"),
    "glszm_aggregations": ("3d_merged",),
    "gldzm_aggregations": ("3d_merged",),
    "ngtdm_aggregations": ("3d_merged",),
    "ngldm_aggregations": ("3d_merged",),
}


def ct_config(letter: str) -> FeatureConfig:
    """medpipe's feature config (with its ``ibsi_processing``) of CT configuration ``letter``.

    The table of IBSI 1 section 5.2 (``05_Reference_data_sets``): A 2D, no interpolation,
    [-500, 400] HU, FBS 25 HU, IVH on the HU; B 2D, 2 mm in-plane bilinear, [-500, 400],
    FBN 32, IVH on the HU; C 3D, 2 mm trilinear, [-1000, 400], FBS 25, IVH FBS 2.5 HU;
    D 3D, 2 mm trilinear, 3σ outliers, FBN 32, IVH on the HU; E 3D, 2 mm tricubic spline
    (ROI trilinear), [-1000, 400] then 3σ, FBN 32, IVH FBN 1000.  Interpolated
    intensities are rounded to integers and the ROI thresholded at 0.5; fixed bin size
    starts at the re-segmentation range's lower bound (``FeatureConfig.discretisation_min``).
    """
    iso = (2.0, 2.0, 2.0)
    processing = {
        "A": IBSIProcessing(resegment=(-500, 400)),
        "B": IBSIProcessing(spacing_mm=(None, 2.0, 2.0), resegment=(-500, 400)),
        "C": IBSIProcessing(spacing_mm=iso, resegment=(-1000, 400)),
        "D": IBSIProcessing(spacing_mm=iso, outlier_sigma=3.0),
        "E": IBSIProcessing(spacing_mm=iso, interpolation="cubic", resegment=(-1000, 400),
                            outlier_sigma=3.0),
    }[letter]
    features = {
        "A": {"bin_width": 25.0, "ivh_discrete": True, **_2D},
        "B": {"bin_count": 32, "ivh_discrete": True, **_2D},
        "C": {"bin_width": 25.0, "ivh_bin_width": 2.5, **_3D},
        "D": {"bin_count": 32, "ivh_discrete": True, **_3D},
        "E": {"bin_count": 32, "ivh_bin_count": 1000, **_3D},
    }[letter]
    return FeatureConfig(families=_ALL_FAMILIES, ibsi_processing=processing, **features)


def load_ct_phantom(data_root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """The CT phantom's image (HU, rounded to integers as IBSI asks), mask, spacing."""
    d = data_root / "reference" / "ibsi1_ct_phantom"
    img = nib.load(d / "image" / "phantom.nii.gz")
    msk = nib.load(d / "mask" / "mask.nii.gz")
    image = np.rint(np.transpose(np.asanyarray(img.dataobj), (2, 1, 0)).astype(np.float64))
    mask = np.transpose(np.asanyarray(msk.dataobj), (2, 1, 0)) > 0
    # float64 of the header's float32 zooms (0.977 mm in-plane, 3 mm slices)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3][::-1])
    return image, mask, spacing


def ct_processed(loaded: tuple, letter: str) -> ProcessedROI:
    """The phantom (:func:`load_ct_phantom`) after configuration ``letter``'s processing."""
    image, mask, spacing = loaded
    processing = ct_config(letter).ibsi_processing
    assert processing is not None
    return process_roi(image, mask, spacing=spacing, config=processing)


def ct_features_of(roi: ProcessedROI, letter: str) -> dict[str, float]:
    """medpipe's features of an already processed phantom (configuration ``letter``)."""
    full = ct_config(letter)
    # the same settings without the processing (done), FBS still from its range's bound
    config = full.model_copy(
        update={"ibsi_processing": None, "min_value": full.discretisation_min}
    )
    return compute_features(
        roi.image, roi.intensity_mask, spacing=roi.spacing, config=config,
        morphology_mask=roi.morphology_mask,
    )


def ct_features(data_root: Path, letter: str, loaded: tuple | None = None) -> dict[str, float]:
    """medpipe's features of the CT phantom under configuration ``letter``."""
    image, mask, spacing = loaded or load_ct_phantom(data_root)
    return compute_features(image, mask, spacing=spacing, config=ct_config(letter))


def ct_rows(csv_path: Path, letter: str) -> list[Row]:
    """The reference rows of configuration ``letter`` (``name`` None: unmapped)."""
    return reference_rows(csv_path, f"config. {letter}")


def ct_table(rows_by_config: dict[str, list[Row]], feats: dict[str, dict[str, float]]
             ) -> tuple[str, list[tuple[str, Row, float]], list[tuple[str, Row]]]:
    """Out-of-tolerance rows as a table; also the failed and the unmapped rows."""
    failed: list[tuple[str, Row, float]] = []
    unmapped: list[tuple[str, Row]] = []
    for letter, rows in rows_by_config.items():
        for r in rows:
            if r.name is None:
                unmapped.append((letter, r))
                continue
            got = feats[letter][r.name]
            if not abs(got - r.expected) <= r.tolerance:  # NaN fails
                failed.append((letter, r, got))
    lines = [f"{'feature':<60} {'config':<6} {'expected':>11} {'got':>11} {'tolerance':>10}"]
    for letter, r, got in failed:
        lines.append(
            f"{r.id[:60]:<60} {letter:<6} {r.expected:11.4g} {got:11.4g} {r.tolerance:10.3g}"
        )
    return "\n".join(lines), failed, unmapped


# --- end ct -----------------------------------------------------------------------------


if __name__ == "__main__":
    import sys

    from tests.conftest import shared_data_dir

    root = shared_data_dir()
    if sys.argv[1:2] == ["ct"]:  # python -m tests.features._ibsi ct [A B ...]
        letters = sys.argv[2:] or list(CT_CONFIGS)
        loaded = load_ct_phantom(root)
        csv_path = root / "reference" / "ibsi1_reference_values.csv"
        text, failed, unmapped = ct_table(
            {c: ct_rows(csv_path, c) for c in letters},
            {c: ct_features(root, c, loaded) for c in letters},
        )
        print(text)
        print(f"{len(failed)} out of tolerance, {len(unmapped)} unmapped")
    else:
        print(table(root)[0])
