"""DICOM reader: probe one file, read one series, list a DICOMDIR.

Every file gets a clear outcome: a :class:`~medpipe.io.base.Probe` /
:class:`~medpipe.io.base.Series`, or a :class:`~medpipe.errors.SourceError` subclass
whose one-line reason names the file.

Geometry follows :mod:`medpipe.geometry`: slices are sorted by the projection of
ImagePositionPatient on the slice normal (never by InstanceNumber), ``origin`` is the
position of the first sorted slice and the direction rows are
``[normal, column cosine, row cosine]`` (LPS unit vectors of array axes z, y, x).

Modules: :mod:`~medpipe.io.dicom.part10` (opening files, truncation checks),
:mod:`~medpipe.io.dicom.values` (header values), :mod:`~medpipe.io.dicom.scan` (the
fast header scan), :mod:`~medpipe.io.dicom.probe`, :mod:`~medpipe.io.dicom.dicomdir`,
:mod:`~medpipe.io.dicom.frames` (per-frame geometry, pixel decoding),
:mod:`~medpipe.io.dicom.geometry` (slice order and grid),
:mod:`~medpipe.io.dicom.suv` (PET body-weight SUV from the header, or why not) and
:mod:`~medpipe.io.dicom.series` (the series reader).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from medpipe.io.base import Probe, Series
from medpipe.io.dicom.dicomdir import read_dicomdir
from medpipe.io.dicom.part10 import DEFAULT_MAX_BYTES, is_seg
from medpipe.io.dicom.probe import probe_dicom
from medpipe.io.dicom.series import read_dicom_series
from medpipe.io.registry import register_reader
from medpipe.io.rtstruct import rasterize_rtstruct, unique_name
from medpipe.io.seg import rasterize_seg

# pydicom logs every non-conformant value it reads (e.g. an over-long SH) as a warning
# *and* emits a Python warning.  Archives are full of them and they are not actionable
# per file; decoder failures reach the catalog as quarantine reasons instead.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)

__all__ = ["probe_dicom", "read_dicom_series", "read_dicomdir", "DEFAULT_MAX_BYTES", "DicomReader"]


class DicomReader:
    """DICOM files (Part 10; any name: the registry's fall-back), with RTSTRUCT and SEG masks."""

    name = "dicom"
    suffixes: tuple[str, ...] = (".dcm", ".dicom")
    series_per_image = False

    def probe(self, root: Path, rel: str) -> Probe:
        """See :func:`probe_dicom`."""
        return probe_dicom(root, rel)

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        """One series from its image files; RTSTRUCT ROIs and SEG segments become its labels.

        A name that an earlier mask file of the series already gave a label gets a
        ``_2``, ``_3``… suffix, so no mask is lost.
        """
        series = read_dicom_series(root, images)
        for rel in masks:
            rasterize = rasterize_seg if is_seg(root, rel) else rasterize_rtstruct
            for roi, mask in rasterize(root, rel, series).items():
                series.labels[unique_name(roi, series.labels)] = mask
            series.sources.append(rel)
        return [series]


register_reader(DicomReader())
