"""The fast paths of the DICOM / RTSTRUCT readers against their references.

* the header scan of :func:`probe_dicom` against the pydicom-based probe (same probe or
  same reason), on pydicom's test files and on truncated / corrupted copies of them;
* the in-place view of uncompressed pixels against ``Dataset.pixel_array``;
* the polygon fill of the RTSTRUCT rasteriser against ``skimage.draw.polygon``;
* the work split of :func:`medpipe.ingest.batches`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from skimage.draw import polygon as sk_polygon

import medpipe.io.dicom.frames as dicom_frames
import medpipe.io.dicom.probe as dicom
import medpipe.io.rtstruct as rtstruct
from medpipe.errors import SourceError
from medpipe.ingest import GroupPlan, batches

PYDICOM_FILES = Path(get_testdata_file("CT_small.dcm")).parent
SAMPLES = sorted(p for p in PYDICOM_FILES.glob("*.dcm") if p.stat().st_size < 2_000_000)
FUZZ_SOURCES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "rtdose_1frame.dcm",
    "UN_sequence.dcm",
]


def _outcome(root: Path, rel: str, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(dicom, "_fast_probe", lambda *a, **k: None)
        try:
            return repr(dicom.probe_dicom(root, rel))
        except SourceError as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - compared, not hidden
            return f"crash {type(exc).__name__}: {exc}"


def test_fast_probe_matches_pydicom_on_test_files(monkeypatch: pytest.MonkeyPatch) -> None:
    used = 0
    real = dicom._fast_probe

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal used
        found = real(*args, **kwargs)  # type: ignore[arg-type]
        used += found is not None
        return found

    for path in SAMPLES:
        rel = path.name
        slow = _outcome(PYDICOM_FILES, rel, fast=False, monkeypatch=monkeypatch)
        with monkeypatch.context() as m:
            m.setattr(dicom, "_fast_probe", counting)
            fast = _outcome(PYDICOM_FILES, rel, fast=True, monkeypatch=monkeypatch)
        assert fast == slow, rel
    assert used >= 10  # the fast path is really exercised


@pytest.mark.parametrize("name", FUZZ_SOURCES)
def test_fast_probe_matches_pydicom_on_damaged_copies(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (PYDICOM_FILES / name).read_bytes()
    rng = random.Random(name)
    for trial in range(60):
        damaged = bytearray(data)
        if trial % 3 == 0:  # cut
            damaged = damaged[: rng.randrange(132, len(damaged))]
        elif trial % 3 == 1:  # flipped bytes in the header
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(132, min(len(damaged), 4000))] = rng.randrange(256)
        else:  # bytes dropped from the header
            at = rng.randrange(132, min(len(damaged), 4000))
            del damaged[at : at + rng.randint(1, 8)]
        (tmp_path / "x.dcm").write_bytes(bytes(damaged))
        slow = _outcome(tmp_path, "x.dcm", fast=False, monkeypatch=monkeypatch)
        fast = _outcome(tmp_path, "x.dcm", fast=True, monkeypatch=monkeypatch)
        assert fast == slow, trial


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd samples
def test_native_pixels_equal_pixel_array() -> None:
    checked = 0
    for path in SAMPLES:
        try:
            ds = pydicom.dcmread(path)
            ts = ds.file_meta.TransferSyntaxUID
        except Exception:  # noqa: BLE001 - not every sample is a readable Part 10 file
            continue
        view = dicom_frames._native_pixels(ds, ts)
        if view is None:
            continue
        ref = ds.pixel_array
        assert view.dtype == ref.dtype, path.name
        np.testing.assert_array_equal(view.reshape(ref.shape), ref)
        checked += 1
    assert checked >= 5


def _sk_fill(r: np.ndarray, c: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    plane = np.zeros(shape, dtype=bool)
    rr, cc = sk_polygon(r, c, shape=shape)
    plane[rr, cc] = True
    return plane


@pytest.mark.parametrize("block", [1 << 21, 5])
def test_fill_polygon_equals_skimage(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtstruct, "_FILL_BLOCK", block)
    rng = np.random.default_rng(block)
    for trial in range(400):
        k = int(rng.integers(3, 25))
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        kind = trial % 4
        if kind == 0:  # anywhere, partly outside the plane
            r, c = rng.uniform(-8, 48, k), rng.uniform(-8, 48, k)
        elif kind == 1:  # vertices and edges through pixel centres
            r, c = rng.integers(-3, 40, k).astype(float), rng.integers(-3, 40, k).astype(float)
        elif kind == 2:  # vertices within the vertex tolerance of a centre
            jitter = [0.0, 1e-13, -1e-13, 1e-11]
            r = rng.integers(0, 30, k) + rng.choice(jitter, k)
            c = rng.integers(0, 30, k) + rng.choice(jitter, k)
        else:  # a contour-like closed curve
            angle = np.sort(rng.uniform(0, 2 * np.pi, k))
            radius = rng.uniform(1, 25)
            r, c = 20 + radius * np.sin(angle), 20 + radius * np.cos(angle)
        np.testing.assert_array_equal(
            rtstruct._fill_polygon(r, c, shape), _sk_fill(r, c, shape), err_msg=str(trial)
        )


def test_batches_balance_work_and_keep_every_plan() -> None:
    rng = random.Random(3)
    plans = [
        GroupPlan(
            series=f"s{i:02d}",
            kind="dicom",
            members=[{"path": f"{i}/{j}", "size": rng.randint(1_000, 200_000)} for j in range(m)],
        )
        for i, m in enumerate(rng.choices(range(1, 80), k=40))
    ]
    out = batches(plans, n=8)
    assert len(out) == 8
    assert sorted(p.series for b in out for p in b) == sorted(p.series for p in plans)

    def work(batch: list[GroupPlan]) -> int:
        return sum(p.nbytes + (256 << 10) * len(p.members) for p in batch)

    loads = [work(b) for b in out]
    assert loads == sorted(loads, reverse=True)
    biggest = max(work([p]) for p in plans)
    assert max(loads) - min(loads) <= biggest  # LPT bound
    capped = batches(plans, n=2, max_bytes=1_000_000)
    for b in capped:
        assert len(b) == 1 or sum(p.nbytes for p in b) <= 1_000_000
    assert batches([], n=4) == []
