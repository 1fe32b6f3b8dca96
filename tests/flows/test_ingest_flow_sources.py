"""The ingest flow on a real LocalCluster with the archive at a URL (``medpipe.sources``).

The archive is an fsspec ``memory://`` filesystem: it exists only in the flow's process,
so the Dask workers can read its files only from the flow's staging folder, which is
what a remote archive (S3, a PACS) relies on.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
from pydicom.data import get_testdata_file

from flows.ingest import IngestParams, ingest_flow
from medpipe import catalog, store

NAMES = ("CT_small.dcm", "MR_small.dcm")


def test_ingest_flow_reads_a_url_archive_through_its_staging_folder(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    for name in NAMES:
        fs.pipe_file(f"/flow-archive/{name}", Path(get_testdata_file(name)).read_bytes())
    out = str(tmp_path / "store.zarr")
    params = IngestParams(archive="memory://flow-archive", store=out, cluster="local:1",
                          concurrency=2)
    summary = ingest_flow(params)
    assert (summary.new, summary.files_ingested, summary.quarantined) == (2, 2, 0)
    assert len(store.list_groups(out, "images")) == 2
    assert set(catalog.current(out)["path"]) == set(NAMES)
    again = ingest_flow(params)
    assert (again.unchanged, again.files_ingested) == (2, 0)


def test_dicomweb_credentials_load_from_secret_blocks(monkeypatch) -> None:  # noqa: ANN001
    from prefect.blocks.system import Secret

    from flows._credentials import DICOMWEB_BLOCKS, load_archive_credentials
    from medpipe.config import dicomweb_auth

    for var in DICOMWEB_BLOCKS:
        monkeypatch.delenv(var, raising=False)  # restored (absent) after the test
    Secret(value="block-token").save(DICOMWEB_BLOCKS["MEDPIPE_DICOMWEB_TOKEN"], overwrite=True)
    assert load_archive_credentials("s3://bucket/prefix") == []  # not a DICOMweb archive
    assert dicomweb_auth().token is None
    assert load_archive_credentials("dicomweb+https://pacs/dicom-web") == [
        "MEDPIPE_DICOMWEB_TOKEN"
    ]
    assert dicomweb_auth().token == "block-token"
    # credentials already in the environment win: no block is read
    monkeypatch.setenv("MEDPIPE_DICOMWEB_TOKEN", "env-token")
    assert load_archive_credentials("dicomweb+https://pacs/dicom-web") == []
    assert dicomweb_auth().token == "env-token"
