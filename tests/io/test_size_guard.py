"""Every reader refuses a header that declares too many pixels before it allocates them.

Each file below is small on disk but its header declares far more than
:data:`medpipe.io.base.MAX_BYTES` of pixels (65535 × 65535 × 65535 voxels, or a
65535 × 65535 float32 plane).  The reader must raise
:class:`~medpipe.errors.SourceTooLargeError` naming the file and the declared size,
and the process's peak memory must not grow by anything like the declared size.
"""

from __future__ import annotations

import resource
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medpipe.errors import SourceError, SourceTooLargeError
from medpipe.io.base import MAX_BYTES, check_declared_size
from medpipe.io.dicom import read_dicom_series
from medpipe.io.nifti import read_nifti
from medpipe.io.raster import probe_raster, read_raster

#: The refusal may parse headers, never allocate the pixels (GiBs).
MAX_GROWTH_KB = 256 * 1024


def _dicom(root: Path) -> str:
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 65535
    ds.save_as(root / "huge.dcm")
    return "huge.dcm"


def _nifti(root: Path) -> str:
    hdr = nib.Nifti2Header()  # NIfTI-2: 64-bit dimensions
    hdr.set_data_shape((65535, 65535, 65535))
    hdr.set_data_dtype(np.int16)
    raw = bytearray(nib.Nifti2Image(np.zeros((1, 1, 1), np.int16), np.eye(4)).to_bytes())
    raw[: hdr.sizeof_hdr] = hdr.binaryblock
    (root / "huge.nii").write_bytes(bytes(raw))
    return "huge.nii"


def _png(root: Path) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", 65535, 65535, 8, 6, 0, 0, 0)  # 8-bit RGBA
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (root / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return "huge.png"


def _tiff(root: Path) -> str:
    # one little-endian IFD: 65535 x 65535 float32, one strip of 4 bytes at offset 8
    entries = [
        (256, 4, 1, 65535),  # ImageWidth, LONG
        (257, 4, 1, 65535),  # ImageLength
        (258, 3, 1, 32),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, 65535),  # RowsPerStrip
        (279, 4, 1, 4),  # StripByteCounts
        (339, 3, 1, 3),  # SampleFormat: IEEE float
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    (root / "huge.tif").write_bytes(b"II*\x00" + struct.pack("<I", 12) + b"\0" * 4 + ifd)
    return "huge.tif"


READERS: dict[str, tuple[Callable[[Path], str], Callable[[Path, str], object]]] = {
    "dicom": (_dicom, lambda root, rel: read_dicom_series(root, [rel])),
    "nifti": (_nifti, lambda root, rel: read_nifti(root, [rel])),
    "png": (_png, read_raster),
    "tiff": (_tiff, read_raster),
}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_huge_header_is_refused_before_allocating(kind: str, tmp_path: Path) -> None:
    make, read = READERS[kind]
    rel = make(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SourceError) as info:
        read(tmp_path, rel)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    message = str(info.value)
    assert isinstance(info.value, SourceTooLargeError), message
    assert rel in message and ("bytes" in message or "pixels" in message), message
    assert grown < MAX_GROWTH_KB, f"{kind}: peak memory grew by {grown} kB"


@pytest.mark.parametrize("kind", ["png", "tiff"])
def test_raster_probe_of_a_huge_header_raises_only_source_errors(kind: str, tmp_path: Path) -> None:
    rel = READERS[kind][0](tmp_path)
    try:
        probe = probe_raster(tmp_path, rel)
    except SourceError as err:  # refused at the probe: fine, with the file named
        assert rel in str(err)
    else:  # or the probe passes the header on, and read refuses it (above)
        assert probe.detail["shape"][-2:] == [65535, 65535]


def test_the_guard_names_file_size_and_limit() -> None:
    check_declared_size(MAX_BYTES, "a/b.dcm", "exactly the limit")  # at the limit: allowed
    with pytest.raises(SourceTooLargeError, match=r"a/b\.dcm.*2×2 int8 = 9 bytes.*8-byte limit"):
        check_declared_size(9, "a/b.dcm", "2×2 int8", limit=8)
    with pytest.raises(MemoryError):  # the builtin it also inherits
        check_declared_size(MAX_BYTES + 1, "x.nii", "too much")
