"""Value coders: stored pixel values ↔ physical values, and the attributes they record.

The pattern of xarray's ``coding`` package: a small object that knows one
transformation, with ``decode`` (stored → physical), ``encode`` (physical → stored,
so that ``decode(encode(x)) == x`` for every ``x`` that ``decode`` produces) and the
attributes it writes (``attrs``, read back by ``from_attrs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medpipe.errors import InvalidSourceError

__all__ = ["ModalityRescale"]


def _per_plane(values: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (int, float, np.number)):
        return (float(values),)
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class ModalityRescale:
    """The DICOM modality LUT's linear rescale: ``physical = stored * slope + intercept``.

    Slopes and intercepts apply per plane (along axis 0); one value applies to all
    planes.  Decoded values are float32, computed plane by plane in float64 and
    rounded once (never a float64 copy of the whole volume); the identity rescale
    keeps the stored dtype and array.

    Attributes
    ----------
    slope, intercept
        Per-plane values, or a single value for every plane.
    type
        RescaleType (``HU``, ``US``, PET ``Units`` …).
    units
        PET Units, when the header has them.
    stored_dtype
        Dtype of the stored (encoded) values.
    """

    slope: tuple[float, ...] = (1.0,)
    intercept: tuple[float, ...] = (0.0,)
    type: str = "US"
    units: str | None = None
    stored_dtype: str = "int16"

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", _per_plane(self.slope))
        object.__setattr__(self, "intercept", _per_plane(self.intercept))
        object.__setattr__(self, "stored_dtype", str(np.dtype(self.stored_dtype)))
        if not self.slope or not self.intercept:
            raise ValueError("slope and intercept need at least one value")

    @property
    def identity(self) -> bool:
        """Whether decoding leaves the stored values unchanged."""
        return all(s == 1.0 for s in self.slope) and all(i == 0.0 for i in self.intercept)

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
            to ``float32(float64(stored) * slope + intercept)``.
        """
        if self.identity:
            return stored
        slope, inter = self._planes(stored.shape[0])
        out = np.empty(stored.shape, dtype=np.float32)
        for k in range(stored.shape[0]):
            plane = stored[k].astype(np.float64)
            plane *= slope[k]
            plane += inter[k]
            out[k] = plane
        return out

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values of physical ones: ``round((values - intercept) / slope)``.

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
        )
