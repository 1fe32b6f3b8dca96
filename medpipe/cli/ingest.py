"""``medpipe ingest``, ``info`` and ``quarantine``: an archive into a store, and what is in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medpipe.cli.common import (
    ClusterOpt,
    DemoSecretOpt,
    check_secret,
    console,
    print_summary,
    run_flow,
)

__all__ = ["ingest", "info", "quarantine"]


def ingest(
    archive: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Archive root.")],
    store: Annotated[str, typer.Argument(help="Store path or fsspec URL.")],
    limit: Annotated[int | None, typer.Option(help="Only the first N files (dev run).")] = None,
    cluster: ClusterOpt = "local",
    demo_secret: DemoSecretOpt = False,
) -> None:
    """Ingest ARCHIVE into STORE (incremental: unchanged files are not read)."""
    from flows.ingest import IngestParams, ingest_flow

    check_secret(demo_secret)
    params = IngestParams(
        archive=str(archive), store=store, limit=limit, cluster=cluster, demo_secret=demo_secret
    )
    print_summary(run_flow(ingest_flow, params))
    console.print(f"quarantined files: [bold]medpipe quarantine {store}[/]")


def info(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """List the series in STORE with modality, shape, spacing, labels and status."""
    from medpipe import catalog
    from medpipe import store as st
    from medpipe.ingest import IMAGES

    cat = catalog.current(store)
    status = {}
    if not cat.empty:
        for key, rows in cat.dropna(subset=["series"]).groupby("series"):
            status[key] = ",".join(sorted(set(rows["status"])))
    table = Table(title=f"{store}: images")
    for col in ("series", "modality", "shape", "spacing (mm)", "labels", "status"):
        table.add_column(col)
    for path in st.list_groups(store, IMAGES):
        attrs = st.read_attrs(store, path).get("medpipe", {})
        key = path.rsplit("/", 1)[-1]
        spacing = "×".join(f"{s:.3g}" for s in attrs.get("spacing", []))
        table.add_row(
            key,
            str(attrs.get("modality")),
            "×".join(map(str, attrs.get("shape", []))),
            spacing,
            ",".join(attrs.get("labels", [])),
            status.get(key, "ingested"),
        )
    console.print(table)


def quarantine(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the quarantined files of STORE with their reasons."""
    from medpipe import catalog

    cat = catalog.current(store)
    bad = cat[cat["status"] == "quarantined"] if not cat.empty else cat
    if as_json:
        for rec in bad[["path", "reason", "run_id"]].to_dict("records"):
            typer.echo(json.dumps(rec))
        return
    table = Table(title=f"{store}: {len(bad)} quarantined files")
    table.add_column("path")
    table.add_column("reason")
    for rec in bad.to_dict("records"):
        table.add_row(rec["path"], rec["reason"])
    console.print(table)
