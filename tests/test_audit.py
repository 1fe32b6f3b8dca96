"""No archive path outside the catalog, and ``medpipe audit`` proving no PHI is anywhere.

The archive is pydicom's ``CT_small.dcm`` re-headered with fake PHI, filed under a folder
named after the patient (``SMITH_JOHN_12345/…``) as real archives often are.  One
series has a slice of another size, so the whole series is quarantined and its other
files' reasons name that slice; a broken PNG is quarantined with a decoder message.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import xarray as xr
import zarr
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from medpipe import catalog
from medpipe import store as st
from medpipe.audit import Values, audit_store, collect_values, words
from medpipe.deid import file_key
from medpipe.ingest import ingest_archive
from medpipe.report import ingest_markdown, qa_markdown, write_nightly_report, write_report
from medpipe.store import tables

SECRET = b"test-secret"  # tests/conftest.py sets MEDPIPE_SECRET to this
FOLDER = "SMITH_JOHN_12345"
CULPRIT = f"{FOLDER}/CT1/4.dcm"
#: What must not appear anywhere but the catalog (case-insensitive).
LEAKS = ("smith", "12345", "springfield", "999887722", "19610415")


def _ct(path: Path, *, study: str, series: str, z: float, size: int | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "SMITH^JOHN^Q"
    ds.PatientID = "12345"
    ds.PatientBirthDate = "19610415"
    ds.AccessionNumber = "999887722"
    ds.InstitutionName = "SGH SPRINGFIELD GENERAL HOSPITAL"
    ds.ReferringPhysicianName = "HIBBERT^JULIUS"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200704"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    x, y, _ = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z]
    if size is not None:  # a slice of another size: the series cannot be stacked
        ds.Rows = ds.Columns = size
        ds.PixelData = np.zeros((size, size), np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    root = tmp_path_factory.mktemp("audit")
    archive = root / "archive"
    study = generate_uid()
    bad, good = generate_uid(), generate_uid()
    for i in range(4):
        _ct(archive / FOLDER / "CT1" / f"{i + 1}.dcm", study=study, series=bad, z=5.0 * i,
            size=64 if i == 3 else None)
    for i in range(3):
        _ct(archive / FOLDER / "CT2" / f"{i + 1}.dcm", study=study, series=good, z=5.0 * i)
    (archive / FOLDER / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 20)
    store = str(root / "store.zarr")
    summary = ingest_archive(str(archive), store, secret=SECRET)
    write_report(store)  # the QA report of the ingest run
    return archive, store, summary


def _leaks(text: str) -> list[str]:
    return [w for w in LEAKS if w in text.lower()]


def test_no_archive_path_outside_the_catalog(ingested: tuple[Path, str, object]) -> None:
    archive, store, summary = ingested
    assert summary.series_ingested == 1 and summary.quarantined == 5
    cur = catalog.current(store)
    # the catalog keeps the paths (operators find files by them) ...
    assert cur.loc[CULPRIT, "status"] == "quarantined"
    assert "image size" in cur.loc[CULPRIT, "reason"]
    # ... and a sibling's reason names the culprit by its file key, not its path
    sibling = cur.loc[f"{FOLDER}/CT1/1.dcm", "reason"]
    assert f"series not ingested: {file_key(CULPRIT, secret=SECRET)}: image size" in sibling
    assert not _leaks(" ".join(str(r) for r in cur["reason"].dropna()))
    # the ingest summary (the ingest-summary artifact) and the QA report
    assert not _leaks(json.dumps(summary.to_dict())), summary.reasons
    assert not _leaks(ingest_markdown(summary))
    (report,) = [p for p in Path(store, "reports").iterdir() if p.is_dir()]
    for name in ("index.html", "report.json"):
        text = (report / name).read_text()
        assert not _leaks(text), (name, _leaks(text))
    assert "quarantine" in (report / "index.html").read_text().lower()


def test_values_in_their_spellings(ingested: tuple[Path, str, object]) -> None:
    archive, _, _ = ingested
    values = collect_values(archive)
    assert values.headers == 7 and values.paths == 8

    def found(text: str) -> set[str]:
        return {v.source for v in values.find(words(text))}

    assert found("reviewed by John Smith") == {"PatientName", "path"}
    assert found("smith_john") == {"PatientName", "path"}
    assert found("born 1961-04-15.") == {"PatientBirthDate"}
    assert found("15.04.1961") == {"PatientBirthDate"}
    assert found("Springfield") == {"InstitutionName"}
    assert "AccessionNumber" in found("acc 999887722")
    assert found("julius") == {"ReferringPhysicianName"}
    # not identifying, or not the whole word: no hit
    assert not found("value 0.12345 and 12345.5, key ab12345cd, run 20200704T101010Z")
    assert not found("CT general hospital image series CT2 scan png")
    assert not found("the smithsonian")


def test_find_matches_a_brute_force_search_over_many_shared_first_words() -> None:
    """Thousands of spellings sharing a first word (a bench's ``SMITH^…`` names, an
    institution's ``ST …`` wards): ``find`` returns exactly the spellings a word-by-word
    comparison of every spelling at every position finds, and again after a value is added."""
    vals = Values()
    for i in range(3000):
        vals.add(f"SMITH^PAT^{i:05d}".replace("^", " "), "PatientName", split=True)
    vals.add("ST MARY WARD 7", "InstitutionName", split=True)
    text = ("ngff scale smith pat 00017 smith pat 02999 smith pat 99999 smith "
            "st mary ward 7 pat 00042") * 3
    tokens = words(text)

    def brute() -> set[tuple[tuple[str, ...], str]]:
        return {(v.words, v.source)
                for vs in vals.spellings.values() for v in vs
                for i in range(len(tokens)) if tuple(tokens[i : i + len(v.words)]) == v.words}

    got = {(v.words, v.source) for v in vals.find(tokens)}
    assert got == brute()
    assert (("smith", "pat", "00017"), "PatientName") in got
    assert not any(w == ("smith", "pat", "99999") for w, _ in got)
    vals.add("SMITH PAT 99999", "PatientName")  # the lookup follows an added value
    got = {(v.words, v.source) for v in vals.find(tokens)}
    assert got == brute() and (("smith", "pat", "99999"), "PatientName") in got


def test_audit_is_clean(ingested: tuple[Path, str, object]) -> None:
    archive, store, _ = ingested
    result = audit_store(store, archive)
    assert result.hits == ()
    index = len(list(Path(store, "outputs").glob("*.parquet")))  # the outputs index: scanned
    assert result.values >= 10 and result.files == 9 + index  # 3 catalog parts not scanned
    assert result.allowed and all(a.startswith("catalog/part-") for a in result.allowed)
    assert result.summary_line() == (
        f"PHI audit: 0 hits over {result.values} values in {result.files} files"
    )


def _plant(store: str) -> tuple[str, str]:
    (image,) = st.list_groups(store, "images")
    zarr.open_group(str(Path(store, image)), mode="r+").attrs["note"] = "checked: Smith, John"
    table = xr.Dataset(
        {"comment": ("sample", np.array(["fine", f"see {FOLDER} again"], dtype=object))},
        coords={"series": ("sample", np.array(["a", "b"], dtype=object))},
    )
    tables.write_table(table, store=store, path="features/planted")
    return image, "features/planted/comment"


def test_audit_finds_planted_phi(ingested: tuple[Path, str, object], tmp_path: Path) -> None:
    archive, store, _ = ingested
    copy = str(tmp_path / "store.zarr")
    shutil.copytree(store, copy)
    image, column = _plant(copy)
    Path(copy, "labels").mkdir()  # a file that does not decode: its printable strings
    Path(copy, "labels", "x.parquet").write_bytes(b"PAR1\x00\x13 junk 19610415 \x00\xff")
    result = audit_store(
        copy, archive, texts=[("Prefect log of flow run 'x'", "done with 1961-04-15")]
    )
    where = {(h.location, h.source) for h in result.hits}
    assert (f"{image}/zarr.json", "PatientName") in where
    assert (f"{column} (string array)", "path") in where
    assert ("Prefect log of flow run 'x'", "PatientBirthDate") in where
    assert ("labels/x.parquet", "PatientBirthDate") in where
    assert {h.location for h in result.hits} == {
        f"{image}/zarr.json", f"{column} (string array)", "Prefect log of flow run 'x'",
        "labels/x.parquet",
    }
    assert result.summary_line().startswith(f"PHI audit: {len(result.hits)} hits over")


def test_audit_command(ingested: tuple[Path, str, object], tmp_path: Path) -> None:
    from medpipe.cli import app

    archive, store, _ = ingested
    runner = CliRunner()
    args = ["audit", "--archive", str(archive), "--no-prefect"]
    ok = runner.invoke(app, [*args, store])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"PHI audit: 0 hits over \d+ values in \d+ files", ok.output)
    assert "not scanned: catalog/" in ok.output
    copy = str(tmp_path / "store.zarr")
    shutil.copytree(store, copy)
    image, _ = _plant(copy)
    bad = runner.invoke(app, [*args, copy])
    assert bad.exit_code == 1, bad.output
    assert f"  {image}/zarr.json: 'smith (in SMITH JOHN Q)' (PatientName)\n" in bad.output
    doc = json.loads(runner.invoke(app, [*args, "--json", copy]).stdout)  # progress: stderr
    assert doc["hits"] and {h["location"] for h in doc["hits"]} >= {f"{image}/zarr.json"}


def test_real_fake_phi_headers(shared_data: Path, tmp_path: Path) -> None:
    """The fake-PHI CT headers, filed under the patient's name (symlinks, no copy)."""
    src = shared_data / "dicom" / "deid_data_humans"
    archive = tmp_path / "archive" / "SIMPSON_HOMER_00007041776"
    archive.mkdir(parents=True)
    for f in sorted(src.glob("*.dcm")):
        (archive / f.name).symlink_to(f)
    store = str(tmp_path / "store.zarr")
    ingest_archive(str(archive.parent), store, secret=SECRET)
    values: Values = collect_values(archive.parent)
    for text in ("SIMPSON", "homer", "00007041776", "20200704", "2020-07-04", "SPRINGFIELD",
                 "999887722"):
        assert values.find(words(text)), text
    assert audit_store(store, archive.parent, values=values).hits == ()
    (image, *_) = st.list_groups(store, "images")
    zarr.open_group(str(Path(store, image)), mode="r+").attrs["x"] = {"who": "Homer Simpson"}
    hits = audit_store(store, archive.parent, values=values).hits
    assert {h.location for h in hits} == {f"{image}/zarr.json"}


def test_nightly_report_shows_the_audit(ingested: tuple[Path, str, object], tmp_path: Path) -> None:
    from medpipe.results import FeatureResult, ModelStageResult, PreprocessResult

    archive, store, summary = ingested
    copy = str(tmp_path / "store.zarr")
    shutil.copytree(store, copy)
    kwargs = dict(
        ingest=summary,
        preprocess=PreprocessResult(group="preprocessed/x", skipped="nothing to do"),
        features=FeatureResult(group="features/x", skipped="nothing to do"),
        model=ModelStageResult(name="m"),
        stages={"ingest": 1.0},
    )
    expected = audit_store(copy, archive).summary_line()
    path, rep = write_nightly_report(copy, "night-1", archive=str(archive), **kwargs)
    page = Path(copy, path).read_text()
    assert re.fullmatch(r"PHI audit: 0 hits over \d+ values in \d+ files", expected)
    assert expected in page and expected in qa_markdown(rep, path=path, url="file://x")
    assert json.loads(Path(copy, path).with_name("report.json").read_text())["phi_audit"] == {
        **rep.audit, "line": expected
    }
    image, _ = _plant(copy)
    path, rep = write_nightly_report(copy, "night-2", archive=str(archive), **kwargs)
    page = Path(copy, path).read_text()
    assert rep.audit["hits"] >= 1 and f"{image}/zarr.json" in page
    assert "smith" not in page.lower()  # where, never the value
    write_report(copy, "night-1")  # medpipe report: no archive, no audit
    page = Path(copy, "reports/night-1/index.html").read_text()
    assert "PHI audit: not run for this report" in page


@pytest.fixture()
def prefect_api():
    """A temporary Prefect server (SQLite): PREFECT_API_URL is set while it runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_ingest_flow_logs_and_artifacts_hold_no_phi(
    ingested: tuple[Path, str, object], tmp_path: Path, prefect_api: None
) -> None:
    from prefect import flow, get_run_logger
    from prefect.logging.handlers import APILogHandler

    from flows.ingest import IngestParams, ingest_flow
    from medpipe.cli import app
    from medpipe.cli.audit import prefect_texts

    archive, _, _ = ingested
    store = str(tmp_path / "store.zarr")
    summary = ingest_flow(IngestParams(archive=str(archive), store=store, cluster="local:1"))
    assert summary.quarantined == 5
    texts, origin = prefect_texts()
    assert origin.startswith("Prefect API http")
    assert any("ingest-summary" in t for _, t in texts)  # the artifact was read
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "--archive", str(archive), store])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"PHI audit: 0 hits over \d+ values in \d+ files and \d+ Prefect", ok.output)

    @flow(name="leaky")
    def leaky() -> None:
        get_run_logger().info("looked at SMITH_JOHN_12345 today")

    leaky()
    APILogHandler().flush()  # logs reach the API from a background worker: send them now
    bad = runner.invoke(app, ["audit", "--archive", str(archive), store])
    assert bad.exit_code == 1, bad.output
    assert "Prefect log of flow run" in bad.output
