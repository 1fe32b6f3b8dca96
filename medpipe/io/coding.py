"""Value coders: stored pixel values ↔ physical values, and the attributes they record.

The pattern of xarray's ``coding`` package: a small object that knows one
transformation, with ``decode`` (stored → physical), ``encode`` (physical → stored,
so that ``decode(encode(x)) == x`` for every ``x`` that ``decode`` produces) and the
attributes it writes (``attrs``, read back by ``from_attrs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medpipe.errors import InvalidSourceError

__all__ = ["ModalityRescale", "describe_values", "suv_not_computed"]


def _per_plane(values: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (int, float, np.number)):
        return (float(values),)
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class ModalityRescale:
    """The DICOM modality LUT's linear rescale: ``physical = stored * slope + intercept``,
    times the PET body-weight SUV factor where one was computed.

    Slopes and intercepts apply per plane (along axis 0); one value applies to all
    planes.  Decoded values are float32, computed plane by plane in float64 and
    rounded once (never a float64 copy of the whole volume); the identity rescale
    keeps the stored dtype and array.  With ``suv_factor`` the decoded values are
    ``float32((stored * slope + intercept) * suv_factor)`` (SUVbw, g/ml).

    Attributes
    ----------
    slope, intercept
        Per-plane values, or a single value for every plane.
    type
        What the decoded values are: RescaleType (``HU``, ``US`` …), PET ``Units``, or
        ``GML`` (SUVbw) once the SUV factor is applied.
    units
        PET Units of the stored image, when the header has them.
    stored_dtype
        Dtype of the stored (encoded) values.
    suv_factor
        Body-weight SUV factor (:func:`medpipe.io.dicom.suv.suv_bw`), or ``None``.
    suv
        The SUV record: status, inputs and their provenance, or why SUV was not
        computed (durations only, no date or time).  Not part of equality.
    """

    slope: tuple[float, ...] = (1.0,)
    intercept: tuple[float, ...] = (0.0,)
    type: str = "US"
    units: str | None = None
    stored_dtype: str = "int16"
    suv_factor: float | None = None
    suv: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", _per_plane(self.slope))
        object.__setattr__(self, "intercept", _per_plane(self.intercept))
        object.__setattr__(self, "stored_dtype", str(np.dtype(self.stored_dtype)))
        if not self.slope or not self.intercept:
            raise ValueError("slope and intercept need at least one value")
        if self.suv_factor is not None:
            factor = float(self.suv_factor)
            if not (np.isfinite(factor) and factor > 0):
                raise ValueError(f"suv_factor must be positive and finite, got {factor}")
            object.__setattr__(self, "suv_factor", factor)

    @property
    def identity(self) -> bool:
        """Whether decoding leaves the stored values unchanged."""
        return (
            all(s == 1.0 for s in self.slope)
            and all(i == 0.0 for i in self.intercept)
            and self.suv_factor in (None, 1.0)
        )

    @property
    def decoded_dtype(self) -> np.dtype:
        """float32, or the stored dtype for the identity rescale."""
        return np.dtype(self.stored_dtype) if self.identity else np.dtype(np.float32)

    def _planes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        slope = np.asarray(self.slope, dtype=np.float64)
        inter = np.asarray(self.intercept, dtype=np.float64)
        if slope.size not in (1, n) or inter.size not in (1, n):
            raise InvalidSourceError(
                f"rescale has {slope.size} slopes / {inter.size} intercepts for {n} planes"
            )
        return np.broadcast_to(slope, (n,)), np.broadcast_to(inter, (n,))

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Physical values of stored ones (plane ``k`` = ``stored[k]``).

        Parameters
        ----------
        stored
            Array of stored values; axis 0 indexes the planes.

        Returns
        -------
        numpy.ndarray
            ``stored`` itself for the identity rescale, else a new float32 array equal
            to ``float32(float64(stored) * slope + intercept)`` (times ``suv_factor``).
        """
        if self.identity:
            return stored
        slope, inter = self._planes(stored.shape[0])
        out = np.empty(stored.shape, dtype=np.float32)
        for k in range(stored.shape[0]):
            plane = stored[k].astype(np.float64)
            plane *= slope[k]
            plane += inter[k]
            if self.suv_factor is not None:
                plane *= self.suv_factor
            out[k] = plane
        return out

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values of physical ones: ``round((values / suv_factor - intercept) / slope)``.

        Parameters
        ----------
        values
            Physical values; axis 0 indexes the planes.

        Returns
        -------
        numpy.ndarray
            Of ``stored_dtype``.

        Raises
        ------
        InvalidSourceError
            A value falls outside the stored dtype's range.
        """
        dtype = np.dtype(self.stored_dtype)
        if self.identity:
            return values.astype(dtype, copy=False)
        slope, inter = self._planes(values.shape[0])
        out = np.empty(values.shape, dtype=dtype)
        for k in range(values.shape[0]):
            plane = values[k].astype(np.float64)
            if self.suv_factor is not None:
                plane /= self.suv_factor
            plane -= inter[k]
            plane /= slope[k]
            if dtype.kind in "iu":
                np.rint(plane, out=plane)
                info = np.iinfo(dtype)
                if plane.size and (plane.min() < info.min or plane.max() > info.max):
                    raise InvalidSourceError(f"rescaled values do not fit {dtype}")
            out[k] = plane
        return out

    @property
    def attrs(self) -> dict[str, Any]:
        """The attributes stored with the image (``medpipe.rescale``)."""
        out: dict[str, Any] = {
            "slope": self.slope[0] if len(set(self.slope)) == 1 else list(self.slope),
            "intercept": (
                self.intercept[0] if len(set(self.intercept)) == 1 else list(self.intercept)
            ),
            "type": self.type,
            "applied": not self.identity,
        }
        if self.units:
            out["units"] = self.units
        if self.suv_factor is not None:
            out["suv_factor"] = self.suv_factor
        if self.suv is not None:
            out["suv"] = dict(self.suv)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], stored_dtype: str) -> ModalityRescale:
        """The coder that :attr:`attrs` describes (``stored_dtype`` is not recorded)."""
        return cls(
            slope=attrs.get("slope", 1.0),
            intercept=attrs.get("intercept", 0.0),
            type=str(attrs.get("type", "US")),
            units=attrs.get("units"),
            stored_dtype=stored_dtype,
            suv_factor=attrs.get("suv_factor"),
            suv=attrs.get("suv"),
        )


def suv_not_computed(rescale: Mapping[str, Any]) -> str | None:
    """Why a PET series' SUV was not computed (from its ``rescale`` attributes), or ``None``.

    ``None`` too for a series that is not PET or whose SUV was computed or stored.
    """
    suv = rescale.get("suv") if isinstance(rescale, Mapping) else None
    if not isinstance(suv, Mapping) or suv.get("status") != "not computed":
        return None
    return str(suv.get("reason") or "unknown reason")


def describe_values(rescale: Mapping[str, Any]) -> str:
    """What a stored image's values are, in a few words (``medpipe info``).

    Examples: ``HU``, ``SUVbw (from BQML)``, ``SUVbw (stored as GML)``,
    ``BQML (SUV not computed: no PatientWeight (0010,1030))``; ``""`` when nothing is
    recorded (NIfTI, raster images).
    """
    if not isinstance(rescale, Mapping) or not rescale:
        return ""
    suv = rescale.get("suv")
    units = rescale.get("units")
    if isinstance(suv, Mapping):
        status = suv.get("status")
        if status == "computed":
            return f"SUVbw (from {units})"
        if status == "stored":
            return "SUVbw (stored as GML)"
        if status == "not computed":
            return f"{units or rescale.get('type', '?')} (SUV not computed: {suv.get('reason')})"
    kind = rescale.get("type")
    if kind is None:
        return "rescaled" if rescale.get("applied") else "stored values"
    return str(kind)
