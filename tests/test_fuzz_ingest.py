"""Fuzzing the whole ingest path: 1,000 seeded mutations of real DICOM, NIfTI and PNG files.

Each mutated copy goes through :func:`medpipe.ingest.ingest_archive` (probe, read,
write).  Whatever the bytes, the run finishes, every file gets a catalog row, every
quarantine has a one-line reason without a traceback, and memory stays bounded: a
header declaring 65535×65535×65535 voxels is refused before anything is allocated.
"""

from __future__ import annotations

import gzip
import resource
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from medpipe import catalog, ingest

pytestmark = pytest.mark.slow

SECRET = b"fuzz-test-secret"
PER_SOURCE = 250
#: Peak resident memory the run may add (the sources are a few kB each).
MAX_GROWTH_KB = 1_500_000


def _sources() -> dict[str, bytes]:
    import skimage

    png = Path(skimage.__file__).parent / "data" / "phantom.png"
    return {
        "ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        "mr.dcm": Path(get_testdata_file("MR_small.dcm")).read_bytes(),
        "anat.nii": (Path(data_path) / "resampled_anat_moved.nii").read_bytes(),
        "phantom.png": png.read_bytes(),
    }


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: bit flips, truncation, huge lengths/dimensions, runs."""
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    n = len(b)
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 16))):
            i = int(rng.integers(0, n))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncation
        del b[int(rng.integers(0, n)):]
    elif kind == 2:  # a huge length or count somewhere (in the header part, mostly)
        i = int(rng.integers(0, min(n - 4, 1024)))
        b[i : i + 4] = struct.pack("<I", int(rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0xFFFF0000])))
    elif kind == 3:  # huge dimensions: every 16-bit value equal to a dimension becomes 65535
        dims = {64, 128, 256, 10, 15, 33, 48, 40}
        for i in range(0, min(n - 1, 2048), 2):
            if struct.unpack_from("<H", b, i)[0] in dims and rng.random() < 0.5:
                struct.pack_into("<H", b, i, 0xFFFF)
    elif kind == 4:  # an inserted random run
        i = int(rng.integers(0, n))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # a duplicated run
        i = int(rng.integers(0, n - 1))
        j = min(n, i + int(rng.integers(1, 256)))
        b[j:j] = b[i:j]
    return bytes(b)


def _huge_headers(root: Path) -> list[str]:
    """Files whose headers declare 65535×65535×65535 voxels."""
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 65535
    ds.save_as(root / "huge.dcm")
    hdr = nib.Nifti2Header()  # NIfTI-2: 64-bit dimensions
    hdr.set_data_shape((65535, 65535, 65535))
    hdr.set_data_dtype(np.int16)
    img = nib.Nifti2Image(np.zeros((1, 1, 1), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[: hdr.sizeof_hdr] = hdr.binaryblock
    (root / "huge.nii").write_bytes(bytes(raw))
    (root / "huge.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    return ["huge.dcm", "huge.nii", "huge.nii.gz"]


def test_fuzzed_archive_is_ingested_without_a_crash(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    rng = np.random.default_rng(20261202)
    written = []
    for name, data in _sources().items():
        stem, _, suffix = name.partition(".")
        for i in range(PER_SOURCE):
            rel = f"{stem}/{i:03d}.{suffix}"
            (archive / stem).mkdir(exist_ok=True)
            (archive / rel).write_bytes(mutate(data, rng))
            written.append(rel)
    written += _huge_headers(archive)
    assert len(written) >= 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = ingest.ingest_archive(str(archive), str(tmp_path / "store.zarr"), secret=SECRET)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    rows = catalog.current(str(tmp_path / "store.zarr")).set_index("path")
    assert set(rows.index) == set(written)  # every file has a catalog row
    assert summary.scanned == len(written)
    quarantined = rows[rows["status"] == "quarantined"]
    assert len(quarantined) > 0 and summary.quarantined == len(quarantined)
    for path, reason in quarantined["reason"].items():
        assert reason and "\n" not in reason and "Traceback" not in reason, (path, reason)
    assert set(rows["status"]) <= {"ingested", "quarantined", "skipped"}
    for rel in ("huge.dcm", "huge.nii", "huge.nii.gz"):
        assert rows.loc[rel, "status"] == "quarantined", rel
        assert "bytes" in rows.loc[rel, "reason"], rows.loc[rel, "reason"]  # refused by size
    # the mutations leave some files readable: those went through read and write too
    assert (rows["status"] == "ingested").sum() > 0 and summary.series_ingested > 0
    assert grown < MAX_GROWTH_KB, f"peak memory grew by {grown} kB"
