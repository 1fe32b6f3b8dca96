"""bench/scale.py's archive generator: fresh UIDs and no PHI of the original files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pydicom

_PATH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"
_spec = importlib.util.spec_from_file_location("bench_scale", _PATH)
scale = importlib.util.module_from_spec(_spec)
sys.modules["bench_scale"] = scale  # dataclasses look their module up
_spec.loader.exec_module(scale)

UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def test_generator_gives_fresh_uids_and_drops_the_original_phi(tmp_path: Path) -> None:
    sources = scale.source_files()
    arch = scale.generate_archive(tmp_path / "archive", 10, sources=sources)
    assert len(arch.files) == 10
    originals = [pydicom.dcmread(p) for p in sources]
    original_uids = {str(ds.get(kw)) for ds in originals for kw in UIDS if kw in ds}
    phi = {
        kw: {str(ds.get(kw)) for ds in originals if str(ds.get(kw) or "").strip()}
        for kw in scale.PHI_KEYWORDS
    }
    strong = phi["PatientName"] | phi["PatientID"] | phi["AccessionNumber"]
    assert phi["PatientName"] and phi["PatientID"], "sources carry PHI"
    seen: dict[str, set[str]] = {kw: set() for kw in UIDS}
    for i, path in enumerate(arch.files):
        ds = pydicom.dcmread(path)
        raw = path.read_bytes()
        for kw in UIDS:
            uid = str(ds[kw].value)
            assert uid not in original_uids and uid not in seen[kw]
            seen[kw].add(uid)
        # no identifying attribute keeps an original value; no original patient name,
        # patient ID, accession number or UID occurs anywhere in the file's bytes
        for kw, values in phi.items():
            assert str(ds.get(kw, "")) not in values, (path.name, kw)
        for value in {v for v in strong if any(c.isalpha() for c in v)} | original_uids:
            assert value.encode() not in raw, (path.name, value)
        assert str(ds.PatientID) == f"SC{i:08d}"
        assert str(ds.PatientName).startswith("QUOKKA^")
        # the image itself is the source's
        src = pydicom.dcmread(sources[i % len(sources)])
        assert (ds.pixel_array == src.pixel_array).all()
    # a changed file keeps its series and changes its content
    before = arch.files[3].read_bytes()
    scale.change_pixel(arch.files[3])
    after = pydicom.dcmread(arch.files[3])
    assert arch.files[3].read_bytes() != before
    assert str(after.SeriesInstanceUID) in seen["SeriesInstanceUID"]


def test_the_audit_finds_no_fake_phi_in_the_store_of_a_generated_archive(tmp_path: Path) -> None:
    """The fake values share no word with what medpipe writes (a first version's
    ``SCALE^…`` names matched NGFF's ``"scale"`` in every image's ``zarr.json``)."""
    from medpipe.audit import audit_store
    from medpipe.ingest import ingest_archive

    arch = scale.generate_archive(tmp_path / "archive", 6)
    store = str(tmp_path / "store.zarr")
    assert ingest_archive(str(arch.root), store, secret=b"bench-test").quarantined == 0
    result = audit_store(store, arch.root)
    assert result.files > 0 and result.values > 0
    assert result.clean, [(h.location, h.source) for h in result.hits]
