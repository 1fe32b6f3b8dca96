"""Body-weight SUV of a PET series from its DICOM header, or the reason it cannot be had.

The rules are those of the QIBA vendor-neutral SUV pseudo-code (QIBA FDG-PET/CT
Profile, Appendix G "Vendor-neutral pseudo-codes for SUV calculation"; the QIBA wiki
page "SUV vendor neutral pseudo code"), as also followed by the IBSI / OncoRay SUV
computation guide (https://oncoray.github.io/suv_computation/suv.html):

* the image must be attenuation and decay corrected (``CorrectedImage`` holds ``ATTN``
  and ``DECY``) with ``DecayCorrection`` ``START`` (to the scan start) or ``ADMIN`` (to
  the administration time: no decay between injection and scan);
* ``Units`` ``BQML``: ``SUVbw = A * weight[g] / decayed dose``, with the injected
  ``RadionuclideTotalDose`` decayed by ``2 ** (-decay time / RadionuclideHalfLife)``;
  ``Units`` ``CNTS``: Philips' private SUV Scale Factor (7053,1000), or its Activity
  Concentration Scale Factor (7053,1009), which makes BQML of the rescaled values;
  ``Units`` ``GML``: the values already are SUVbw;
* the scan time is ``SeriesDate``/``SeriesTime`` unless they are after the earliest
  acquisition date/time of the series (a post-processed series), in which case it is
  GE's private scan date/time (0009,100D) when present, else the earliest acquisition;
* the injection time is ``RadiopharmaceuticalStartDateTime``, or
  ``RadiopharmaceuticalStartTime`` on ``SeriesDate`` (the day before when that puts the
  injection after the scan: the series spans midnight).

Where an input is missing or implausible nothing is guessed: the series keeps its
stored units and the result says why (:attr:`SuvResult.reason`).  The recorded
provenance holds durations only, never an absolute date or time (they are PHI).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from medpipe.io.dicom.part10 import _one_line

__all__ = ["SuvResult", "suv_bw", "SUV_COMPUTED", "SUV_STORED", "SUV_NOT_COMPUTED"]

#: ``SuvResult.status`` values.
SUV_COMPUTED, SUV_STORED, SUV_NOT_COMPUTED = "computed", "stored", "not computed"

#: Plausible ranges; a value outside is refused, never corrected.
WEIGHT_KG = (0.5, 500.0)  # a dose in MBq or a weight in g falls outside
DOSE_BQ = (1e5, 5e10)  # 0.1 MBq .. 50 GBq (an activity in MBq or mCi falls outside)
HALF_LIFE_S = (10.0, 1e7)  # O-15 122 s, Rb-82 76 s .. I-124 4.2 d, Zr-89 3.3 d
MAX_HALF_LIVES = 10.0  # longest plausible decay time, in half-lives

_METHOD = "SUVbw, QIBA vendor-neutral pseudo-code"
_PHILIPS = "Philips PET Private Group"
_GE = "GEMS_PETD_01"


class _NoSuv(Exception):  # noqa: N818 - internal signal: the reason SUV is not computed
    pass


@dataclass(frozen=True)
class SuvResult:
    """The SUV factor of a series, or why there is none.

    Attributes
    ----------
    status
        :data:`SUV_COMPUTED` (``factor`` converts the rescaled values to SUVbw),
        :data:`SUV_STORED` (the values already are SUVbw, Units ``GML``) or
        :data:`SUV_NOT_COMPUTED` (``reason`` says why).
    factor
        ``SUVbw = rescaled value * factor`` (computed only).
    reason
        One line naming the missing or implausible input (not computed only).
    inputs
        Provenance: the inputs used and where they came from (durations, no dates).
    """

    status: str
    factor: float | None = None
    reason: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def attrs(self) -> dict[str, Any]:
        """The ``rescale["suv"]`` record (JSON-serialisable; the factor itself is the
        coder's ``suv_factor``)."""
        out: dict[str, Any] = {"status": self.status, "method": _METHOD, **self.inputs}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def suv_bw(datasets: Sequence[Dataset]) -> SuvResult:
    """The body-weight SUV factor of a PET series (see the module docstring for the rules).

    Parameters
    ----------
    datasets
        The series' headers; the first gives the series-level values, all of them the
        earliest acquisition time and the Philips factors (which must agree).

    Returns
    -------
    SuvResult
        Never raises for bad header values: they become the ``reason``.
    """
    inputs: dict[str, Any] = {}
    try:
        return _suv_bw(datasets, inputs)
    except _NoSuv as exc:
        return SuvResult(SUV_NOT_COMPUTED, reason=str(exc), inputs=inputs)


def _suv_bw(datasets: Sequence[Dataset], inputs: dict[str, Any]) -> SuvResult:
    ds0 = datasets[0]
    units = _str(ds0, "Units").upper()
    if not units:
        raise _NoSuv("no Units (0054,1001)")
    inputs["units"] = units
    if units == "GML":
        return SuvResult(SUV_STORED, inputs=inputs)
    if units not in ("BQML", "CNTS"):
        raise _NoSuv(f"Units {units} cannot be converted to SUVbw (needs BQML, CNTS or GML)")
    corrected = {str(v).strip().upper() for v in _multi(ds0, "CorrectedImage")}
    missing = [c for c in ("ATTN", "DECY") if c not in corrected]
    if missing:
        raise _NoSuv(
            f"CorrectedImage (0028,0051) lacks {' and '.join(missing)}: "
            "not attenuation and decay corrected"
        )
    decay = _str(ds0, "DecayCorrection").upper()
    if decay not in ("START", "ADMIN"):
        raise _NoSuv(f"DecayCorrection (0054,1102) is {decay or 'absent'} (needs START or ADMIN)")
    inputs["decay_correction"] = decay
    scale = 1.0
    if units == "CNTS":
        suv_factor = _philips(datasets, 0x00, "SUV Scale Factor (7053,1000)")
        if suv_factor is not None:
            inputs["source"] = "Philips private SUV Scale Factor (7053,1000)"
            return SuvResult(SUV_COMPUTED, factor=suv_factor, inputs=inputs)
        activity = _philips(datasets, 0x09, "Activity Concentration Scale Factor (7053,1009)")
        if activity is None:
            raise _NoSuv(
                "Units CNTS without Philips' SUV Scale Factor (7053,1000) or "
                "Activity Concentration Scale Factor (7053,1009)"
            )
        scale = activity
        inputs["bqml_scale"] = activity
        inputs["bqml_scale_source"] = "Philips Activity Concentration Scale Factor (7053,1009)"

    weight = _number(ds0, "PatientWeight", "(0010,1030)", WEIGHT_KG, "kg")
    inputs["patient_weight_kg"] = weight
    seq = _get(ds0, "RadiopharmaceuticalInformationSequence")
    if not seq:
        raise _NoSuv("no RadiopharmaceuticalInformationSequence (0054,0016)")
    item = seq[0]
    dose = _number(item, "RadionuclideTotalDose", "(0018,1074)", DOSE_BQ, "Bq")
    half = _number(item, "RadionuclideHalfLife", "(0018,1075)", HALF_LIFE_S, "s")
    inputs["injected_dose_bq"] = dose
    inputs["half_life_s"] = half
    if decay == "ADMIN":
        decay_time = 0.0
        inputs["decay_time_source"] = "DecayCorrection ADMIN: values are at the injection time"
    else:
        scan, inputs["scan_time_source"] = _scan_datetime(datasets)
        decay_time, inputs["start_time_source"] = _decay_time(item, ds0, scan, half)
    decayed = dose * 2.0 ** (-decay_time / half)
    inputs["decay_time_s"] = decay_time
    inputs["decayed_dose_bq"] = decayed
    factor = weight * 1000.0 / decayed * scale
    return SuvResult(SUV_COMPUTED, factor=factor, inputs=inputs)


# ---------------------------------------------------------------------------- times


def _scan_datetime(datasets: Sequence[Dataset]) -> tuple[dt.datetime, str]:
    """The scan (decay reference) time and where it comes from (QIBA's series/acquisition rule)."""
    ds0 = datasets[0]
    series_date = _date(_get(ds0, "SeriesDate"), "SeriesDate")
    series_time = _time(_get(ds0, "SeriesTime"), "SeriesTime")
    if series_date is None or series_time is None:
        raise _NoSuv("no SeriesDate/SeriesTime (0008,0021/0031)")
    series = dt.datetime.combine(series_date, series_time)
    acquisitions = [a for a in (_acquisition(ds, series_date) for ds in datasets) if a]
    if not acquisitions:
        return series, "SeriesTime (no AcquisitionTime to check it against)"
    earliest = min(acquisitions)
    if series <= earliest:
        return series, "SeriesTime"
    # A post-processed series: its series date/time are when it was made, not scanned.
    ge = _ge_scan_datetime(ds0)
    if ge is not None:
        return ge, "GE private scan date/time (0009,100D), SeriesTime is after AcquisitionTime"
    return earliest, "earliest AcquisitionTime, SeriesTime is after it"


def _acquisition(ds: Dataset, series_date: dt.date) -> dt.datetime | None:
    value = _get(ds, "AcquisitionDateTime")
    if value is not None:
        return _datetime(value, "AcquisitionDateTime")
    time = _time(_get(ds, "AcquisitionTime"), "AcquisitionTime")
    if time is None:
        return None
    date = _date(_get(ds, "AcquisitionDate"), "AcquisitionDate") or series_date
    return dt.datetime.combine(date, time)


def _ge_scan_datetime(ds: Dataset) -> dt.datetime | None:
    try:
        block = ds.private_block(0x0009, _GE)
    except KeyError:
        return None
    if 0x0D not in block:
        return None
    value = block[0x0D].value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    return _datetime(value, "GE private scan date/time (0009,100D)") if value else None


def _decay_time(item: Dataset, ds0: Dataset, scan: dt.datetime, half: float) -> tuple[float, str]:
    """Seconds from injection to scan, and where the injection time comes from."""
    value = _get(item, "RadiopharmaceuticalStartDateTime")
    if value is not None:
        start = _datetime(value, "RadiopharmaceuticalStartDateTime")
        source = "RadiopharmaceuticalStartDateTime"
        candidates = [start]
    else:
        time = _time(_get(item, "RadiopharmaceuticalStartTime"), "RadiopharmaceuticalStartTime")
        if time is None:
            raise _NoSuv(
                "no RadiopharmaceuticalStartDateTime or RadiopharmaceuticalStartTime "
                "(0018,1078/1072)"
            )
        date = _date(_get(ds0, "SeriesDate"), "SeriesDate")
        assert date is not None  # checked by _scan_datetime
        start = dt.datetime.combine(date, time)
        source = "RadiopharmaceuticalStartTime on SeriesDate"
        # QIBA: "start Date is not explicit ... assume same as Series Date; but consider
        # spanning midnight": an injection the evening before a scan after midnight.
        candidates = [start, start - dt.timedelta(days=1)]
    for k, cand in enumerate(candidates):
        seconds = (scan - cand).total_seconds()
        if 0 <= seconds <= MAX_HALF_LIVES * half:
            return seconds, source + (" (the day before: the series spans midnight)" if k else "")
    seconds = (scan - start).total_seconds()
    if seconds < 0:
        raise _NoSuv(f"the radiopharmaceutical start time is {-seconds:.0f} s after the scan time")
    raise _NoSuv(
        f"implausible decay time {seconds:.0f} s from injection to scan "
        f"(more than {MAX_HALF_LIVES:g} half-lives of {half:g} s)"
    )


_DA = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
_DT = re.compile(r"(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?")


def _date(value: Any, keyword: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date):  # pydicom's DA with datetime conversion on
        return value if not isinstance(value, dt.datetime) else value.date()
    m = _DA.fullmatch(str(value).strip())
    try:
        if m is None:
            raise ValueError(value)
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise _NoSuv(f"invalid {keyword}") from None


def _time(value: Any, keyword: str) -> dt.time | None:
    if value is None:
        return None
    if isinstance(value, dt.time):
        return value
    m = _TM.fullmatch(str(value).strip())
    try:
        if m is None:
            raise ValueError(value)
        micro = int((m[4] or "0").ljust(6, "0"))
        return dt.time(int(m[1]), int(m[2] or 0), int(m[3] or 0), micro)
    except ValueError:
        raise _NoSuv(f"invalid {keyword}") from None


def _datetime(value: Any, keyword: str) -> dt.datetime:
    """A DT value as local date and time (an offset from UTC, if any, is dropped: every
    time of a series is local to the same site)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    m = _DT.fullmatch(str(value).strip())
    if m is None:
        raise _NoSuv(f"invalid {keyword}")
    if not m[2]:
        raise _NoSuv(f"{keyword} has no time of day")
    date = _date(m[1], keyword)
    time = _time(m[2], keyword)
    assert date is not None and time is not None
    return dt.datetime.combine(date, time)


# ---------------------------------------------------------------------------- values


def _get(ds: Dataset, keyword: str) -> Any:
    """A value (``None`` when absent or empty); an unreadable value is a reason."""
    try:
        if keyword not in ds:
            return None
        value = ds[keyword].value
    except Exception as exc:  # noqa: BLE001 - pydicom's conversion errors vary
        raise _NoSuv(f"invalid {keyword}: {_one_line(exc)}") from None
    return None if value is None or value == "" else value


def _str(ds: Dataset, keyword: str) -> str:
    value = _get(ds, keyword)
    return "" if value is None else str(value).strip()


def _multi(ds: Dataset, keyword: str) -> list[Any]:
    value = _get(ds, keyword)
    if value is None:
        return []
    return [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(
        value
    )


def _number(
    ds: Dataset, keyword: str, tag: str, bounds: tuple[float, float], unit: str
) -> float:
    value = _get(ds, keyword)
    if value is None:
        raise _NoSuv(f"no {keyword} {tag}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _NoSuv(f"invalid {keyword} {tag}: {str(value)[:40]!r}") from None
    lo, hi = bounds
    if not lo <= x <= hi:  # also catches NaN
        raise _NoSuv(f"implausible {keyword} {x:g} {unit} (expected {lo:g} to {hi:g} {unit})")
    return x


def _philips(datasets: Sequence[Dataset], offset: int, what: str) -> float | None:
    """A Philips private factor, which every image of the series must carry equally."""
    values = []
    for ds in datasets:
        try:
            block = ds.private_block(0x7053, _PHILIPS)
        except KeyError:
            values.append(None)
            continue
        if offset not in block:
            values.append(None)
            continue
        raw = block[offset].value
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace").strip("\x00 ")
        try:
            values.append(float(raw))
        except (TypeError, ValueError):
            raise _NoSuv(f"invalid Philips {what}") from None
    found = set(values)
    if found == {None}:
        return None
    if len(found) != 1:
        raise _NoSuv(f"Philips {what} differs between the images of the series")
    (value,) = found
    assert value is not None
    if not (value > 0 and value < float("inf")):
        raise _NoSuv(f"implausible Philips {what} {value:g}")
    return value
