"""PET body-weight SUV from the DICOM header (QIBA vendor-neutral pseudo-code).

Real PET pixels: the IBSI sarcoma PET (stored in SUV through RescaleSlope) is
re-headered as BQML with a known dose, half-life, weight and times, so that
``SUV = BQML * weight * 1000 / decayed dose`` must give back the original SUV.  Without
the shared data the same rules run on pydicom's real CT slice re-headered as a PET
series.  Each rule (START / ADMIN, date-time or time-on-series-date, midnight, series
time after acquisition time, GE's private scan time, Philips' private factors) and
each missing or implausible input has its case.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medpipe.io.coding import ModalityRescale, describe_values, suv_not_computed
from medpipe.io.dicom import read_dicom_series

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
WEIGHT, DOSE, HALF = 72.5, 3.7e8, 6586.2  # kg, Bq, s (F-18)
DATE, SERIES_TIME, START_TIME = "20200102", "101500", "091500"  # decay time 3600 s
#: Every date/time string the re-headered files carry: none may reach the attributes.
PHI_TIMES = (
    DATE, "20200101", "20191230", SERIES_TIME, START_TIME, "233000", "003000", "121500",
    "103000", "094500", "130000", "111500",
)


def _factor(decay_s: float, *, weight: float = WEIGHT, dose: float = DOSE) -> float:
    """The SUVbw factor by the textbook formula (independent of medpipe)."""
    return weight * 1000.0 / (dose * 2.0 ** (-decay_s / HALF))


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _pet_header(ds: Dataset, suv_slope: float, factor: float) -> None:
    """Make ``ds`` a BQML slice whose SUV is ``stored * suv_slope`` under ``factor``."""
    ds.Modality = "PT"
    ds.SOPClassUID = PET_SOP
    ds.file_meta.MediaStorageSOPClassUID = PET_SOP
    ds.Units = "BQML"
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = str(WEIGHT)
    ds.SeriesDate = DATE
    ds.SeriesTime = SERIES_TIME
    ds.AcquisitionDate = DATE
    ds.AcquisitionTime = SERIES_TIME
    ds.RescaleSlope = format(suv_slope / factor, ".12g")
    ds.RescaleIntercept = "0"
    item = Dataset()
    item.RadionuclideTotalDose = str(DOSE)
    item.RadionuclideHalfLife = str(HALF)
    item.RadiopharmaceuticalStartDateTime = DATE + START_TIME
    ds.RadiopharmaceuticalInformationSequence = [item]
    for keyword in ("RescaleType", "AcquisitionDateTime"):
        if keyword in ds:
            delattr(ds, keyword)


@pytest.fixture(scope="module")
def synthetic() -> tuple[list[Dataset], np.ndarray]:
    """Four slices of pydicom's real CT_small pixels as a BQML PET series (per-slice slopes),
    and the SUV each slice stands for."""
    src = _read(Path(get_testdata_file("CT_small.dcm")))
    raw = src.pixel_array
    series_uid = generate_uid()
    out, suv = [], []
    for k in range(4):
        ds = copy.deepcopy(src)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ipp = [float(v) for v in src.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 5.0 * k]
        ds.SliceThickness = "5"
        slope = 1e-3 * (1 + k)  # an SUV of up to a few units, as in a real PET
        _pet_header(ds, slope, _factor(3600.0))
        out.append(ds)
        suv.append(raw.astype(np.float64) * slope)
    return out, np.stack(suv)


def _write(
    datasets: list[Dataset], folder: Path, edit: Callable[[list[Dataset]], None]
) -> list[str]:
    copies = [copy.deepcopy(ds) for ds in datasets]
    edit(copies)
    folder.mkdir(parents=True, exist_ok=True)
    rels = []
    for k, ds in enumerate(copies):
        name = f"{k:03d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
        rels.append(f"{folder.name}/{name}")
    return rels


def _bqml(datasets: list[Dataset]) -> np.ndarray:
    """What the unconverted series holds: stored * RescaleSlope (BQML), slice by slice."""
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) for ds in datasets])


def _set(keyword: str, value: object) -> Callable[[list[Dataset]], None]:
    def edit(dss: list[Dataset]) -> None:
        for ds in dss:
            setattr(ds, keyword, value)

    return edit


def _drop(keyword: str, *, item: bool = False) -> Callable[[list[Dataset]], None]:
    def edit(dss: list[Dataset]) -> None:
        for ds in dss:
            target = ds.RadiopharmaceuticalInformationSequence[0] if item else ds
            if keyword in target:
                delattr(target, keyword)

    return edit


def _set_item(keyword: str, value: object) -> Callable[[list[Dataset]], None]:
    def edit(dss: list[Dataset]) -> None:
        for ds in dss:
            setattr(ds.RadiopharmaceuticalInformationSequence[0], keyword, value)

    return edit


def _chain(*edits: Callable[[list[Dataset]], None]) -> Callable[[list[Dataset]], None]:
    def edit(dss: list[Dataset]) -> None:
        for e in edits:
            e(dss)

    return edit


def _philips(offset: int, value: str) -> Callable[[list[Dataset]], None]:
    def edit(dss: list[Dataset]) -> None:
        for ds in dss:
            block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
            block.add_new(offset, "DS", value)

    return edit


def _no_phi(rescale: dict) -> None:
    text = json.dumps(rescale)
    for value in PHI_TIMES:
        assert value not in text, value


# ----------------------------------------------------------------- the computed cases


def _post_processed(dss: list[Dataset]) -> None:
    """SeriesTime 12:15, after the acquisitions (10:15:00 on the last file, later on the
    others): a post-processed series, whose scan time is the earliest acquisition."""
    for k, ds in enumerate(reversed(dss)):
        ds.AcquisitionTime = f"1015{min(k, 59):02d}"
        ds.SeriesTime = "121500"


def _ge_private(dss: list[Dataset]) -> None:
    """A post-processed GE series: its private scan date/time (0009,100D) is the scan time."""
    for ds in dss:
        ds.SeriesTime = "121500"
        ds.AcquisitionTime = "103000"
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0x0D, "DT", DATE + "094500")


#: name -> (header edit, expected decay time from injection to scan, s)
COMPUTED: dict[str, tuple[Callable[[list[Dataset]], None], float]] = {
    "start_datetime": (lambda dss: None, 3600.0),
    "start_time_on_series_date": (
        _chain(_drop("RadiopharmaceuticalStartDateTime", item=True),
               _set_item("RadiopharmaceuticalStartTime", START_TIME)),
        3600.0,
    ),
    "start_time_before_midnight": (
        _chain(
            _drop("RadiopharmaceuticalStartDateTime", item=True),
            _set_item("RadiopharmaceuticalStartTime", "233000"),
            _set("SeriesTime", "003000"),
            _set("AcquisitionTime", "003000"),
        ),
        3600.0,
    ),
    "series_time_after_acquisition": (_post_processed, 3600.0),
    "ge_private_scan_time": (_ge_private, 1800.0),
    "acquisition_datetime": (
        _chain(_set("SeriesTime", "130000"), _set("AcquisitionDateTime", DATE + "101500")),
        3600.0,
    ),
    "admin": (_set("DecayCorrection", "ADMIN"), 0.0),
}


def _by_position(root: Path, rels: list[str]) -> list[Dataset]:
    return sorted((_read(root / r) for r in rels), key=lambda d: float(d.ImagePositionPatient[2]))


def _expected_suv(root: Path, rels: list[str], decay: float) -> np.ndarray:
    return _bqml(_by_position(root, rels)) * _factor(decay)


@pytest.mark.parametrize("case", sorted(COMPUTED))
def test_suv_rules_on_real_ct_pixels(case: str, synthetic: tuple, tmp_path: Path) -> None:
    datasets, _ = synthetic
    edit, decay = COMPUTED[case]
    rels = _write(datasets, tmp_path / "pet", edit)
    series = read_dicom_series(tmp_path, rels)
    r = series.rescale
    assert r["suv"]["status"] == "computed", r["suv"]
    assert r["type"] == "GML" and r["units"] == "BQML" and r["applied"]
    assert r["suv"]["decay_time_s"] == pytest.approx(decay, abs=1e-6)
    assert r["suv_factor"] == pytest.approx(_factor(decay), rel=1e-12)
    assert r["suv"]["patient_weight_kg"] == WEIGHT and r["suv"]["injected_dose_bq"] == DOSE
    np.testing.assert_allclose(
        series.data, _expected_suv(tmp_path, rels, decay), rtol=1e-6, atol=1e-6
    )
    _no_phi(r)
    assert describe_values(r) == "SUVbw (from BQML)"
    assert suv_not_computed(r) is None


def test_suv_equals_the_original_on_the_synthetic_series(synthetic: tuple, tmp_path: Path) -> None:
    datasets, suv = synthetic
    rels = _write(datasets, tmp_path / "pet", lambda dss: None)
    series = read_dicom_series(tmp_path, rels)
    np.testing.assert_allclose(series.data, suv, rtol=0, atol=1e-4)
    assert series.rescale["suv"]["scan_time_source"] == "SeriesTime"
    assert series.rescale["suv"]["start_time_source"] == "RadiopharmaceuticalStartDateTime"


def test_philips_suv_scale_factor(synthetic: tuple, tmp_path: Path) -> None:
    datasets, _ = synthetic
    rels = _write(
        datasets, tmp_path / "pet", _chain(_set("Units", "CNTS"), _philips(0x00, "0.000321"))
    )
    series = read_dicom_series(tmp_path, rels)
    assert series.rescale["suv"]["status"] == "computed"
    assert series.rescale["suv_factor"] == 0.000321
    assert "Philips" in series.rescale["suv"]["source"]
    dss = _by_position(tmp_path, rels)
    np.testing.assert_allclose(series.data, _bqml(dss) * 0.000321, rtol=1e-6)


def test_philips_activity_concentration_factor_makes_bqml(synthetic: tuple, tmp_path: Path) -> None:
    datasets, _ = synthetic
    rels = _write(
        datasets, tmp_path / "pet", _chain(_set("Units", "CNTS"), _philips(0x09, "2.5"))
    )
    series = read_dicom_series(tmp_path, rels)
    assert series.rescale["suv"]["status"] == "computed"
    assert series.rescale["suv_factor"] == pytest.approx(2.5 * _factor(3600.0), rel=1e-12)


# ------------------------------------------------------------- the not-computed cases

#: name -> (header edit, a word the reason must contain)
NOT_COMPUTED: dict[str, tuple[Callable[[list[Dataset]], None], str]] = {
    "no_units": (_drop("Units"), "Units"),
    "other_units": (_set("Units", "PROPCPS"), "PROPCPS"),
    "cnts_without_philips": (_set("Units", "CNTS"), "CNTS"),
    "not_decay_corrected": (_set("CorrectedImage", ["ATTN", "SCAT"]), "DECY"),
    "decay_correction_none": (_set("DecayCorrection", "NONE"), "DecayCorrection"),
    "no_weight": (_drop("PatientWeight"), "PatientWeight"),
    "zero_weight": (_set("PatientWeight", "0"), "implausible PatientWeight"),
    "weight_in_grams": (_set("PatientWeight", "72500"), "implausible PatientWeight"),
    "no_sequence": (_drop("RadiopharmaceuticalInformationSequence"), "Radiopharmaceutical"),
    "no_dose": (_drop("RadionuclideTotalDose", item=True), "RadionuclideTotalDose"),
    "dose_in_mbq": (_set_item("RadionuclideTotalDose", "370"), "implausible RadionuclideTotal"),
    "no_half_life": (_drop("RadionuclideHalfLife", item=True), "RadionuclideHalfLife"),
    "no_start_time": (
        _drop("RadiopharmaceuticalStartDateTime", item=True), "RadiopharmaceuticalStartTime"
    ),
    "start_without_time_of_day": (
        _set_item("RadiopharmaceuticalStartDateTime", DATE), "no time of day"
    ),
    "start_after_scan": (
        _set_item("RadiopharmaceuticalStartDateTime", DATE + "111500"), "after the scan"
    ),
    "decay_too_long": (
        _set_item("RadiopharmaceuticalStartDateTime", "20191230101500"), "implausible decay"
    ),
    "no_series_time": (_drop("SeriesTime"), "SeriesTime"),
    "invalid_series_time": (_set("SeriesTime", "25x"), "SeriesTime"),
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")  # the "25x" case
@pytest.mark.parametrize("case", sorted(NOT_COMPUTED))
def test_missing_or_implausible_input_keeps_the_stored_units(
    case: str, synthetic: tuple, tmp_path: Path
) -> None:
    datasets, _ = synthetic
    edit, word = NOT_COMPUTED[case]
    rels = _write(datasets, tmp_path / "pet", edit)
    series = read_dicom_series(tmp_path, rels)
    r = series.rescale
    assert r["suv"]["status"] == "not computed"
    assert word in r["suv"]["reason"], r["suv"]["reason"]
    assert "suv_factor" not in r and r["type"] != "GML"
    dss = _by_position(tmp_path, rels)
    np.testing.assert_allclose(series.data, _bqml(dss), rtol=1e-6)  # never guessed
    _no_phi(r)
    assert suv_not_computed(r) == r["suv"]["reason"]
    assert "SUV not computed" in describe_values(r)


def test_coder_round_trip_with_suv_factor() -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 32767, size=(5, 7, 9)).astype(np.int16)
    coder = ModalityRescale(
        [0.1, 0.2, 0.3, 0.4, 0.5], 0.0, type="GML", units="BQML", stored_dtype="int16",
        suv_factor=_factor(3600.0), suv={"status": "computed"},
    )
    x = coder.decode(stored)
    assert x.dtype == np.float32
    ref = (stored.astype(np.float64) * np.array(coder.slope)[:, None, None]) * coder.suv_factor
    np.testing.assert_array_equal(x, ref.astype(np.float32))
    np.testing.assert_array_equal(coder.encode(x), stored)
    np.testing.assert_array_equal(coder.decode(coder.encode(x)), x)
    again = ModalityRescale.from_attrs(json.loads(json.dumps(coder.attrs)), "int16")
    np.testing.assert_array_equal(again.decode(stored), x)
    assert again.suv == {"status": "computed"}
    with pytest.raises(ValueError, match="suv_factor"):
        ModalityRescale(1.0, 0.0, suv_factor=0.0)


# ----------------------------------------------------------- the real IBSI PET series


@pytest.fixture(scope="module")
def ibsi_pet(shared_data: Path) -> tuple[Path, list[str]]:
    root = shared_data / "dicom"
    folder = root / "ibsi_sts" / "STS_002" / "PET" / "image"
    return root, sorted(p.relative_to(root).as_posix() for p in folder.glob("*.dcm"))


def test_ibsi_pet_is_stored_suv(ibsi_pet: tuple[Path, list[str]]) -> None:
    root, rels = ibsi_pet
    series = read_dicom_series(root, rels)
    assert series.rescale["units"] == "GML" and series.rescale["type"] == "GML"
    assert series.rescale["suv"]["status"] == "stored"
    assert "suv_factor" not in series.rescale
    assert suv_not_computed(series.rescale) is None


@pytest.mark.parametrize("case", ["start_datetime", "series_time_after_acquisition", "admin"])
def test_reheadered_ibsi_pet_gives_back_its_suv(
    case: str, ibsi_pet: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, rels = ibsi_pet
    original = read_dicom_series(root, rels)
    edit, decay = COMPUTED[case]
    factor = _factor(decay)
    datasets = []
    for rel in rels:
        ds = _read(root / rel)
        _pet_header(ds, float(ds.RescaleSlope), factor)  # BQML = SUV / factor
        datasets.append(ds)
    out = _write(datasets, tmp_path / "pet", edit)
    series = read_dicom_series(tmp_path, out)
    assert series.rescale["suv"]["status"] == "computed"
    assert series.data.shape == original.data.shape
    np.testing.assert_allclose(series.data, original.data, rtol=0, atol=1e-4)
    # ... and without the weight it stays BQML: the original divided by the factor.
    out2 = _write(datasets, tmp_path / "pet2", _chain(edit, _drop("PatientWeight")))
    bqml = read_dicom_series(tmp_path, out2)
    assert bqml.rescale["type"] == "BQML"
    np.testing.assert_allclose(bqml.data * factor, original.data, rtol=1e-5, atol=1e-4)


# ------------------------------------------------- ingest, `medpipe info`, the QA report


def test_ingest_info_and_report_show_the_suv_status(synthetic: tuple, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medpipe import ingest
    from medpipe.cli import app
    from medpipe.report import build_report, run_context
    from medpipe.report.render import render

    datasets, _ = synthetic
    archive = tmp_path / "archive"
    _write(datasets, archive / "good", lambda dss: None)
    other = [copy.deepcopy(ds) for ds in datasets]
    uid = generate_uid()
    for ds in other:
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    _write(other, archive / "noweight", _drop("PatientWeight"))
    store = str(tmp_path / "store.zarr")
    ingest.ingest_archive(str(archive), store, secret=b"test-secret")

    result = CliRunner().invoke(app, ["info", store, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["values"] for r in json.loads(result.stdout)}
    assert "SUVbw (from BQML)" in rows
    assert "BQML (SUV not computed: no PatientWeight (0010,1030))" in rows

    rep = build_report(store, run_context(store))
    assert list(rep.suv_not_computed.values()) == ["no PatientWeight (0010,1030)"]
    page = render(rep)
    assert "SUV not computed" in page and "no PatientWeight (0010,1030)" in page
    (key,) = rep.suv_not_computed
    assert key in page
    for value in PHI_TIMES:
        assert value not in page


def test_colour_and_ct_series_carry_no_suv_record() -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    series = read_dicom_series(path.parent, [path.name])
    assert "suv" not in series.rescale and describe_values(series.rescale) == "HU"
