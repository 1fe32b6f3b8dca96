"""The reader registry: look-up by name, and a reader registered here ingested end to end.

The toy reader below is registered by a fixture of this test only - no module of
medpipe knows it - and a real ``distributed.LocalCluster`` with worker processes
ingests a file of its format: the workers never run that registration, so the run
works only if the work itself carries the reader.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medpipe import catalog, ingest, store
from medpipe.errors import InvalidSourceError, UnsupportedSourceError
from medpipe.io import (
    REGISTRY,
    Probe,
    ReaderRegistry,
    Series,
    kind_of,
    probe_file,
    read_group,
    register_reader,
    unregister_reader,
)
from medpipe.io.dicom import DicomReader
from medpipe.io.nifti import NiftiReader

SECRET = b"registry-test-secret"
MAGIC = "TOYIMG1"


class ToyReader:
    """A text format: ``TOYIMG1 <series uid>`` on the first line, then rows of integers."""

    name = "toy"
    suffixes = (".toy",)
    series_per_image = False

    def probe(self, root: Path, rel: str) -> Probe:
        first = (Path(root) / rel).read_text().split("\n", 1)[0].split()
        if len(first) != 2 or first[0] != MAGIC:
            raise InvalidSourceError("not a toy image (bad magic line)", path=rel)
        return Probe(path=rel, kind=self.name, group=first[1], detail={"modality": "OT"})

    def read(self, root: Path, images: Sequence[str], masks: Sequence[str]) -> list[Series]:
        planes = [np.loadtxt(Path(root) / r, skiprows=1, dtype=np.int16, ndmin=2) for r in images]
        uid = (Path(root) / images[0]).read_text().split("\n", 1)[0].split()[1]
        return [
            Series(
                uid=uid,
                sources=list(images),
                data=np.stack(planes),
                modality="OT",
                spacing=(2.0, 0.5, 0.5),
            )
        ]


def _write_toy(path: Path, uid: str, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(" ".join(str(int(v)) for v in row) for row in arr)
    path.write_text(f"{MAGIC} {uid}\n{rows}\n")


@pytest.fixture
def toy() -> Iterator[ToyReader]:
    reader = register_reader(ToyReader())
    try:
        yield reader
    finally:
        unregister_reader("toy")


def test_lookup_by_name_suffix_sidecar_and_fallback() -> None:
    reg = ReaderRegistry([DicomReader(), NiftiReader()])
    assert reg.kind_of("a/b.NII.GZ") == "nifti"
    assert reg.kind_of("a/IM0001") == "dicom"  # unknown names fall back to DICOM
    assert reg.kind_of("labels.csv") == "sidecar"
    assert reg.for_path("notes.txt") is None
    with pytest.raises(ValueError, match="already registered"):
        reg.register(DicomReader())
    with pytest.raises(ValueError, match="not a Reader"):
        reg.register(object())  # type: ignore[arg-type]

    class Gz:  # a longer suffix wins over a shorter one
        name, suffixes, series_per_image = "gz", (".gz",), False
        probe, read = ToyReader.probe, ToyReader.read

    reg.register(Gz())  # type: ignore[arg-type]
    assert reg.kind_of("x.nii.gz") == "nifti" and reg.kind_of("x.tar.gz") == "gz"
    snap = reg.snapshot()
    reg.unregister("gz")
    assert snap.kind_of("x.tar.gz") == "gz" and reg.kind_of("x.tar.gz") == "dicom"


def test_builtin_readers_are_registered() -> None:
    assert {"dicom", "nifti", "raster", "npz"} <= set(REGISTRY.names)
    assert [kind_of(n) for n in ("a.nii", "b.png", "c.tiff", "d.npz", "e", "f.json")] == [
        "nifti",
        "raster",
        "raster",
        "npz",
        "dicom",
        "sidecar",
    ]
    with pytest.raises(UnsupportedSourceError, match="sidecar"):
        probe_file(Path("."), "notes.md")


def test_toy_reader_without_editing_medpipe(tmp_path: Path, toy: ToyReader) -> None:
    arr = np.arange(12, dtype=np.int16).reshape(3, 4) - 5
    _write_toy(tmp_path / "a.toy", "1.2.3", arr)
    assert kind_of("a.toy") == "toy"
    probe = probe_file(tmp_path, "a.toy")
    assert (probe.kind, probe.group, probe.role) == ("toy", "1.2.3", "image")
    (series,) = read_group(tmp_path, "toy", [("a.toy", "image")])
    np.testing.assert_array_equal(series.data, arr[None])
    unregister_reader("toy")
    assert kind_of("a.toy") == "dicom"  # unregistered: back to the fall-back
    with pytest.raises(InvalidSourceError, match="no reader for kind 'toy'"):
        read_group(tmp_path, "toy", [("a.toy", "image")])
    # ... unless the work carries the reader itself
    (again,) = read_group(tmp_path, "toy", [("a.toy", "image")], reader=toy)
    np.testing.assert_array_equal(again.data, arr[None])
    register_reader(toy)


def _toy_registered() -> bool:
    from medpipe.io import REGISTRY

    return "toy" in REGISTRY.names


@pytest.mark.slow
def test_toy_format_ingested_on_a_local_cluster(tmp_path: Path, toy: ToyReader) -> None:
    distributed = pytest.importorskip("distributed")
    archive = tmp_path / "archive"
    rng = np.random.default_rng(7)
    planes = {f"toy/s{k}.toy": rng.integers(-1000, 3000, (5, 6)).astype(np.int16) for k in (1, 2)}
    for rel, arr in planes.items():  # two files of one toy series
        _write_toy(archive / rel, "9.8.7", arr)
    _write_toy(archive / "toy/other.toy", "9.8.8", planes["toy/s1.toy"][:2])
    (archive / "toy/broken.toy").write_text("not a toy file\n")
    shutil.copy(get_testdata_file("CT_small.dcm"), archive / "ct.dcm")
    out = str(tmp_path / "store.zarr")

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert not any(client.run(_toy_registered).values())
        summary = ingest.ingest_archive(str(archive), out, secret=SECRET, client=client)
        # the workers still know no toy reader: the work carried it
        assert not any(client.run(_toy_registered).values())

    cur = catalog.current(out)
    status = dict(zip(cur["path"], cur["status"], strict=True))
    assert status == {
        "toy/s1.toy": "ingested",
        "toy/s2.toy": "ingested",
        "toy/other.toy": "ingested",
        "toy/broken.toy": "quarantined",
        "ct.dcm": "ingested",
    }
    assert cur.loc["toy/broken.toy", "reason"] == "not a toy image (bad magic line)"
    assert set(cur.loc[list(planes), "kind"]) == {"toy"}
    assert summary.series_ingested == 3 and summary.quarantined == 1
    key = cur.loc["toy/s1.toy", "series"]
    assert cur.loc["toy/s2.toy", "series"] == key
    img = store.open_image(out, f"{ingest.IMAGES}/{key}")
    np.testing.assert_array_equal(
        img.values, np.stack([planes["toy/s1.toy"], planes["toy/s2.toy"]])
    )
    assert img.attrs["source_count"] == 2

    # the in-process run of the same archive gives the same store contents
    ref = str(tmp_path / "ref.zarr")
    ingest.ingest_archive(str(archive), ref, secret=SECRET)
    ref_cur = catalog.current(ref)
    assert dict(zip(ref_cur["path"], ref_cur["series"], strict=True)) == dict(
        zip(cur["path"], cur["series"], strict=True)
    )
    for k in set(cur["series"].dropna()):
        a = store.open_image(out, f"{ingest.IMAGES}/{k}")
        b = store.open_image(ref, f"{ingest.IMAGES}/{k}")
        np.testing.assert_array_equal(a.values, b.values)
