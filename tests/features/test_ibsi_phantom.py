"""Every implemented feature against the published IBSI-1 digital phantom values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_data_dir
from tests.features import _ibsi

_CSV = shared_data_dir() / "reference" / "ibsi1_reference_values.csv"
_ROWS = [r for r in _ibsi.reference_rows(_CSV) if r.name is not None] if _CSV.is_file() else []


@pytest.fixture(scope="module")
def phantom(shared_data: Path) -> dict[str, float]:
    return _ibsi.phantom_features(shared_data)


@pytest.mark.parametrize("row", _ROWS or [None], ids=[r.id for r in _ROWS] or ["no-data"])
def test_phantom_row(row: _ibsi.Row | None, phantom: dict[str, float]) -> None:
    assert row is not None
    got = phantom[row.name]
    assert abs(got - row.expected) <= row.tolerance, (
        f"{row.feature} [{row.aggregation}]: expected {row.expected} ± {row.tolerance}, got {got}"
    )


def test_phantom_table(shared_data: Path) -> None:
    """Print the whole table (shown with ``-rA`` or ``-s``) and check the families we claim."""
    text, summary = _ibsi.table(shared_data)
    print(text)
    for family in (
        "Intensity-based statistical features",
        "Intensity histogram features",
        "Grey level co-occurrence based features",
        "Grey level run length based features",
        "Morphological features",
        "Grey level size zone based features",  # zones
        "Grey level distance zone based features",  # zones
        # neigh
        "Neighbourhood grey tone difference based features",
        "Neighbouring grey level dependence based features",
        "Intensity-volume histogram features",
        "Local intensity features",
    ):
        passed, failed, missing = summary[family]
        assert failed == 0 and missing == 0 and passed > 0, (family, summary[family])


def test_phantom_geometry(shared_data: Path) -> None:
    image, mask, spacing = _ibsi.load_phantom(shared_data)
    assert image.shape == (4, 4, 5) and spacing == (2.0, 2.0, 2.0)
    assert int(mask.sum()) == 74
