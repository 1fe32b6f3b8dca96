"""Helpers for tests that need DICOM SEG objects: a CT series and highdicom-written SEGs.

Used by ``tests/io/test_seg.py`` and ``tests/integration/test_orthanc.py``.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes


def ct_series(folder: Path, *, n: int = 3, z0: float = -75.7) -> list[pydicom.Dataset]:
    """``n`` slices of CT_small 5 mm apart, one series; written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    uid, slices = pydicom.uid.generate_uid(), []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [-158.1, -179.0, z0 + 5.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.save_as(folder / f"{k}.dcm")
        slices.append(ds)
    return slices


def _segment(number: int, label: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def write_seg(
    path: Path,
    sources: list[pydicom.Dataset],
    pixels: np.ndarray,
    labels: list[str],
    kind: str = "BINARY",
) -> None:
    """Write a highdicom SEG of ``pixels`` (slices x rows x cols x segments) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"max_fractional_value": 200} if kind == "FRACTIONAL" else {}
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues[kind],
        segment_descriptions=[_segment(i + 1, name) for i, name in enumerate(labels)],
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=100,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
        manufacturer="medpipe tests",
        manufacturer_model_name="test_seg",
        software_versions="0",
        device_serial_number="0",
        **extra,
    )
    seg.save_as(path)


def two_masks() -> np.ndarray:
    """Two overlapping segments on 3 slices of 128x128 (slice 0 empty: no frames)."""
    a = np.zeros((3, 128, 128), dtype=bool)
    b = np.zeros_like(a)
    a[1, 40:60, 30:90] = True
    a[2, 10:20, 10:20] = True
    b[1:, 50:100, 70:80] = True
    return np.stack([a, b], axis=-1)
