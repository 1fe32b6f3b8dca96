"""The ``medpipe`` command: the front door that starts flows and inspects stores."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="medpipe",
    help="Imaging archive → de-identified OME-Zarr → Dask preprocessing/features → dask-ml.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

ClusterOpt = Annotated[
    str,
    typer.Option("--cluster", help="local | local:N | tcp://host:port | slurm | kubernetes"),
]
DemoSecretOpt = Annotated[
    bool,
    typer.Option(
        "--demo-secret",
        help="Allow the public demo pseudonymisation secret when MEDPIPE_SECRET is not set.",
    ),
]


def _prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect defaults for command-line runs (overridable)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_DISTRIBUTED_LEVEL", "WARNING")
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")


def _run_ingest(archive: Path, store: str, limit: int | None, cluster: str, demo: bool) -> dict:
    _prefect_defaults()
    from flows.ingest import ingest_flow

    return ingest_flow(
        archive=str(archive), store=store, limit=limit, cluster=cluster, demo_secret=demo
    )


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"ingest run {summary['run_id']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    keys = (
        "scanned",
        "new",
        "changed",
        "unchanged",
        "missing",
        "series_ingested",
        "files_ingested",
        "quarantined",
        "skipped",
    )
    for k in keys:
        table.add_row(k.replace("_", " "), str(summary[k]))
    console.print(table)


@app.command()
def ingest(
    archive: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Archive root.")],
    store: Annotated[str, typer.Argument(help="Store path or fsspec URL.")],
    limit: Annotated[int | None, typer.Option(help="Only the first N files (dev run).")] = None,
    cluster: ClusterOpt = "local",
    demo_secret: DemoSecretOpt = False,
) -> None:
    """Ingest ARCHIVE into STORE (incremental: unchanged files are not read)."""
    _print_summary(_run_ingest(archive, store, limit, cluster, demo_secret))
    console.print(f"quarantined files: [bold]medpipe quarantine {store}[/]")


@app.command()
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


@app.command()
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


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the sample archive and store.")] = Path(
        "demo-output"
    ),
    cluster: ClusterOpt = "local",
) -> None:
    """Build the bundled real sample archive and run the main job on it."""
    from medpipe.sample import build_bundled_archive

    archive = build_bundled_archive(out / "archive")
    store = str(out / "store.zarr")
    console.print(f"sample archive: {archive}")
    summary = _run_ingest(archive, store, None, cluster, True)
    _print_summary(summary)
    console.print(f"store: {store}\n  medpipe info {store}\n  medpipe quarantine {store}")


if __name__ == "__main__":  # pragma: no cover
    app()
