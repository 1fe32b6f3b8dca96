"""The feature-extraction config: families (from the registry) and their settings."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from medpipe.config import FrozenConfig
from medpipe.features import imagetypes, registry
from medpipe.features.aggregate import AGGREGATIONS
from medpipe.features.ibsi_processing import IBSIProcessing
from medpipe.features.imagetypes import IMAGE_TYPES, log_name
from medpipe.features.registry import Family
from medpipe.features.zones import ZONE_AGGREGATIONS

__all__ = ["FeatureConfig"]

#: The aggregation keys of each ``*_aggregations`` field not using :data:`AGGREGATIONS`.
_AGGREGATION_KEYS: dict[str, dict[str, str]] = {
    "glszm_aggregations": ZONE_AGGREGATIONS,
    "gldzm_aggregations": ZONE_AGGREGATIONS,
}


class FeatureConfig(FrozenConfig):
    """Frozen feature-extraction settings; :meth:`hash` names the output group.

    ``families`` are names of registered families (:mod:`medpipe.features.registry`),
    checked when the config is validated.  The config keeps the :class:`Family` records
    it resolved then, so on a Dask worker (where a family registered at run time in the
    client is unknown) it still computes them.

    Discretisation: give ``bin_count`` (fixed bin number, the default with 32 bins) or
    ``bin_width`` (fixed bin size, optionally from ``min_value``).  Setting both to
    ``None`` takes the ROI intensities as grey levels already (integers >= 1), as for the
    IBSI digital phantom.

    Image types: ``image_types`` (default ``("original",)``) adds pyradiomics's filtered
    images (``log``, ``wavelet``, ``square``, ``squareroot``, ``logarithm``,
    ``exponential``, ``gradient``); every family but the shape, colour and fitted ones
    is computed on each, named ``<image type>_<feature>``
    (:mod:`medpipe.features.imagetypes`).
    """

    families: tuple[str, ...] = ("firstorder", "histogram", "glcm", "morphology")
    bin_count: Annotated[int, Field(ge=1)] | None = 32
    bin_width: Annotated[float, Field(gt=0)] | None = None
    min_value: float | None = None
    glcm_aggregations: tuple[str, ...] = ("3d_merged", "3d_averaged", "2d_averaged")
    glcm_distance: Annotated[int, Field(ge=1)] = 1
    glrlm_aggregations: tuple[str, ...] = ("3d_merged", "3d_averaged", "2d_averaged")
    # zones: GLSZM / GLDZM aggregations (keys of medpipe.features.zones.ZONE_AGGREGATIONS)
    glszm_aggregations: tuple[str, ...] = ("3d_merged", "2d_averaged", "2_5d_merged")
    gldzm_aggregations: tuple[str, ...] = ("3d_merged", "2d_averaged", "2_5d_merged")
    # neighbourhood (NGTDM, NGLDM, IVH, local intensity peaks; IBSI 3.10, 3.11, 3.5, 3.2)
    #: NGTDM/NGLDM aggregations; there is one matrix per slice or volume, so
    #: 3d_averaged = 3d_merged, 2_5d_directionmerged = 2_5d_merged and
    #: 2d_slicemerged = 2d_averaged
    ngtdm_aggregations: tuple[str, ...] = ("3d_merged", "2_5d_merged", "2d_averaged")
    ngtdm_distance: Annotated[int, Field(ge=1)] = 1
    ngldm_aggregations: tuple[str, ...] = ("3d_merged", "2_5d_merged", "2d_averaged")
    ngldm_distance: Annotated[int, Field(ge=1)] = 1
    ngldm_alpha: Annotated[int, Field(ge=0)] = 0
    #: IVH discretisation (IBSI: finer than for texture, e.g. 0.1 SUV or 1000 bins); both
    #: None: the bin_width / bin_count above
    ivh_bin_width: Annotated[float, Field(gt=0)] | None = None
    ivh_bin_count: Annotated[int, Field(ge=1)] | None = None
    #: True: the IVH of the intensities rounded to integers (IBSI's calibrated discrete
    #: case, CT in HU) even when the texture uses bin_count / bin_width
    ivh_discrete: bool = False
    #: IBSI image processing before the features (IBSI's centre-aligned interpolation,
    #: rounding, range re-segmentation, outlier filtering; medpipe.features.ibsi_processing);
    #: None: the image and ROI as they are
    ibsi_processing: IBSIProcessing | None = None

    @model_validator(mode="after")
    def _one_ivh_discretisation(self) -> FeatureConfig:
        if self.ivh_bin_width is not None and self.ivh_bin_count is not None:
            raise ValueError("ivh_bin_width, ivh_bin_count: set one of them, not both")
        if self.ivh_discrete and (self.ivh_bin_width is not None or self.ivh_bin_count is not None):
            raise ValueError("ivh_discrete: leave ivh_bin_width and ivh_bin_count unset")
        return self

    lbp_points: int = 8
    lbp_radius: float = 1.0
    hsv_bins: int = 8
    crop_margin: Annotated[int, Field(ge=0)] = 1
    #: edge of the plane that the ``pixels`` and ``hog`` families resample to
    pixels_size: Annotated[int, Field(ge=4)] = 28

    #: pyradiomics's image types (:mod:`medpipe.features.imagetypes`): every family is
    #: also computed on each filtered image, named ``<image type>_<feature>``
    image_types: tuple[str, ...] = ("original",)
    #: ``log``: Gaussian sigmas in mm (one image type each)
    log_sigma_mm: tuple[Annotated[float, Field(gt=0)], ...] = (1.0, 2.0, 3.0)
    #: ``wavelet``: a discrete PyWavelets wavelet, pyradiomics's ``start_level``/``level``
    wavelet: str = "coif1"
    wavelet_start_level: Annotated[int, Field(ge=0)] = 0
    wavelet_levels: Annotated[int, Field(ge=1)] = 1
    #: ``gradient``: derivatives per mm (true) or per voxel
    gradient_use_spacing: bool = True

    _resolved: dict[str, Family] = PrivateAttr(default_factory=dict)

    @field_validator("image_types")
    @classmethod
    def _known_image_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in v if t not in IMAGE_TYPES]
        if unknown:
            raise ValueError(f"unknown image type(s) {unknown}; known: {', '.join(IMAGE_TYPES)}")
        if not v or len(set(v)) != len(v):
            raise ValueError("image_types must be non-empty and must not repeat")
        return v

    @field_validator("log_sigma_mm")
    @classmethod
    def _distinct_sigmas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        names = [log_name(s) for s in v]
        if not v or len(set(names)) != len(names):
            raise ValueError("log_sigma_mm must be non-empty and must not repeat")
        return v

    @field_validator("wavelet")
    @classmethod
    def _discrete_wavelet(cls, v: str) -> str:
        import pywt

        if v not in pywt.wavelist(kind="discrete"):
            raise ValueError(
                f"unknown wavelet {v!r}; use a discrete PyWavelets wavelet "
                "(pywt.wavelist(kind='discrete'), e.g. coif1, haar, db2)"
            )
        return v

    @field_validator("families")
    @classmethod
    def _registered_families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = registry.family_names()
        unknown = [f for f in v if f not in known]
        if unknown:
            raise ValueError(
                f"unknown feature family(ies) {unknown}; known: {', '.join(sorted(known))}"
            )
        if len(set(v)) != len(v):
            raise ValueError("families must not repeat")
        return v

    @field_validator(
        "glcm_aggregations", "glrlm_aggregations", "glszm_aggregations", "gldzm_aggregations",
        "ngtdm_aggregations", "ngldm_aggregations",
    )
    @classmethod
    def _known_aggregations(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        known = _AGGREGATION_KEYS.get(info.field_name or "", AGGREGATIONS)
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown aggregation(s) {unknown}; use {list(known)}")
        return v


    @model_validator(mode="before")
    @classmethod
    def _bin_width_replaces_default_bin_count(cls, data: Any) -> Any:
        # bin_count defaults to 32; giving only bin_width means fixed bin size
        if isinstance(data, dict) and data.get("bin_width") is not None and "bin_count" not in data:
            data = {**data, "bin_count": None}
        return data

    @model_validator(mode="after")
    def _one_discretisation(self) -> FeatureConfig:
        if self.bin_count is not None and self.bin_width is not None:
            raise ValueError(
                "bin_count, bin_width: set bin_count (fixed bin number) or bin_width "
                "(fixed bin size), not both"
            )
        return self

    @property
    def discretisation_min(self) -> float | None:
        """``X_min`` of fixed bin size (and of the IVH's range): ``min_value``, else the
        lower bound of ``ibsi_processing``'s re-segmentation range (IBSI's rule), else
        ``None`` (the ROI minimum)."""
        if self.min_value is not None:
            return self.min_value
        return None if self.ibsi_processing is None else self.ibsi_processing.fbs_min_value

    def model_post_init(self, context: Any, /) -> None:
        """Keep the registered :class:`Family` record of each family."""
        self._resolved = {name: registry.get_family(name) for name in self.families}

    def family_records(self) -> tuple[Family, ...]:
        """The :class:`Family` records of :attr:`families`, in order.

        The records resolved at validation time; the registry for any other name (a
        config changed with ``model_copy(update=...)``).
        """
        return tuple(self._resolved.get(n) or registry.get_family(n) for n in self.families)

    def feature_names(self) -> list[str]:
        """The output feature names, in order (independent of the data).

        Per image type of :attr:`image_types` (:mod:`medpipe.features.imagetypes`), the
        names of its families; the original image's keep their plain names.
        """
        return imagetypes.feature_names(self)

    #: The fields that named the feature groups written so far (pinned in
    #: ``tests/test_config.py``).  A field added since is left out of the hashed JSON while
    #: it holds its default, so a new family's settings rename no existing group (nor
    #: orphan the models trained on it); such a field's default must never change.
    NAMING_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "families", "bin_count", "bin_width", "min_value", "glcm_aggregations",
            "glcm_distance", "glrlm_aggregations", "lbp_points", "lbp_radius", "hsv_bins",
            "crop_margin", "pixels_size",
        }
    )

    def _unnamed_defaults(self) -> set[str]:
        """Fields added after the groups were first named that still hold their default."""
        return {
            k
            for k, f in type(self).model_fields.items()
            if k not in self.NAMING_FIELDS and getattr(self, k) == f.default
        }

    def canonical_json(self) -> str:
        """:meth:`FrozenConfig.canonical_json` without the later fields at their defaults."""
        return json.dumps(
            self.model_dump(mode="json", exclude=self._unnamed_defaults()), sort_keys=True,
            separators=(",", ":"), ensure_ascii=True, allow_nan=False,
        )

    def legacy_hash(self) -> str:
        """The 12-hex-digit digest that named feature groups before medpipe used
        :meth:`hash` (SHA-256 of pydantic's JSON dump).

        Only to find a table written by an older medpipe: ``features/<legacy_hash>``
        became ``features/<hash>`` (the ``-<preprocess hash>`` suffix is unchanged).
        """
        dumped = self.model_dump_json(exclude=self._unnamed_defaults())
        return hashlib.sha256(dumped.encode()).hexdigest()[:12]
