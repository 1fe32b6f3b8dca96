"""``medpipe ingest``, ``info`` and ``quarantine``: an archive into a store, and what is in it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medpipe.cli.common import (
    ClusterOpt,
    DemoSecretOpt,
    JsonOpt,
    StoreArg,
    TsvOpt,
    absolute_local,
    check_secret,
    console,
    print_listing,
    print_summary,
    run_flow,
)

__all__ = ["ingest", "info", "quarantine", "ArchiveArg", "ConcurrencyOpt"]


def _archive(value: str) -> str:
    """A local archive must be a folder; a URL is checked when it is listed."""
    from medpipe.sources import is_url

    if not is_url(value) and not Path(value).is_dir():
        raise typer.BadParameter(f"{value} is not a folder (nor an archive URL)")
    return absolute_local(value)


#: The ``ARCHIVE`` argument: a folder, an fsspec URL or ``dicomweb+http(s)://…``.
ArchiveArg = Annotated[
    str,
    typer.Argument(
        callback=_archive,
        help="Archive: a folder, an fsspec URL (s3://bucket/prefix) or a DICOMweb server "
        "(dicomweb+https://host/dicom-web; credentials from $MEDPIPE_DICOMWEB_TOKEN or "
        "$MEDPIPE_DICOMWEB_USER/_PASSWORD).",
    ),
]
#: ``--concurrency``: parallel retrievals from a remote archive.
ConcurrencyOpt = Annotated[
    int, typer.Option(min=1, help="At most N retrievals from a remote archive at a time.")
]


def ingest(
    archive: ArchiveArg,
    store: StoreArg,
    limit: Annotated[int | None, typer.Option(help="Only the first N files (dev run).")] = None,
    cluster: ClusterOpt = "local",
    demo_secret: DemoSecretOpt = False,
    concurrency: ConcurrencyOpt = 4,
) -> None:
    """Ingest ARCHIVE into STORE (incremental: unchanged files are not read)."""
    from flows.ingest import IngestParams, ingest_flow

    check_secret(demo_secret)
    params = IngestParams(
        archive=archive, store=store, limit=limit, cluster=cluster, demo_secret=demo_secret,
        concurrency=concurrency,
    )
    print_summary(run_flow(ingest_flow, params))
    console.print(f"quarantined files: [bold]medpipe quarantine {store}[/]")


def info(
    store: StoreArg,
    as_json: JsonOpt = False,
    as_tsv: TsvOpt = False,
) -> None:
    """List the series in STORE with modality, shape, spacing, labels, values and status.

    ``values`` says what the voxels are (HU, SUVbw, or why a PET series' SUV was not
    computed).
    """
    from medpipe import catalog
    from medpipe import store as st
    from medpipe.ingest import IMAGES
    from medpipe.io.coding import describe_values

    cat = catalog.current(store)
    status = {}
    if not cat.empty:
        for key, rows in cat.dropna(subset=["series"]).groupby("series"):
            status[key] = ",".join(sorted(set(rows["status"])))
    rows = []
    for path in st.list_groups(store, IMAGES):
        attrs = st.read_attrs(store, path).get("medpipe", {})
        key = path.rsplit("/", 1)[-1]
        spacing = "×".join(f"{s:.3g}" for s in attrs.get("spacing", []))
        rows.append(
            [
                key,
                str(attrs.get("modality")),
                "×".join(map(str, attrs.get("shape", []))),
                spacing,
                ",".join(attrs.get("labels", [])),
                describe_values(attrs.get("rescale", {})),
                status.get(key, "ingested"),
            ]
        )
    cols = ["series", "modality", "shape", "spacing (mm)", "labels", "values", "status"]
    print_listing(f"{store}: images", cols, rows, as_json, as_tsv)


def quarantine(
    store: StoreArg,
    as_json: JsonOpt = False,
    as_tsv: TsvOpt = False,
) -> None:
    """List the quarantined files of STORE with their reasons."""
    from medpipe import catalog

    cat = catalog.current(store)
    bad = cat[cat["status"] == "quarantined"] if not cat.empty else cat
    cols = ["path", "reason", "run_id"]
    rows = [[rec.get(c) for c in cols] for rec in bad.to_dict("records")]
    print_listing(f"{store}: {len(bad)} quarantined files", cols, rows, as_json, as_tsv)
