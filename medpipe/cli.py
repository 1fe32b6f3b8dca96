"""The ``medpipe`` command: the front door that starts flows and inspects stores."""

from __future__ import annotations

import json
import os
import warnings
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
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # dask's own INFO chatter
    # dask-ml's searches set the deprecated 'fuse_ave_width' key: one FutureWarning per fit
    quiet = "ignore::FutureWarning:dask.config"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:  # for the worker processes
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet
    warnings.filterwarnings("ignore", category=FutureWarning, module="dask.config")


@app.callback()
def _main() -> None:
    """Set quiet, offline-friendly defaults before Prefect or Dask are imported."""
    _prefect_defaults()


def _fail(err: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {err}")
    return typer.Exit(code=2)


def _check_secret(demo: bool) -> None:
    """Fail before starting anything when no secret can be found (embedded server case)."""
    from medpipe.config import SECRET_ENV, resolve_secret
    from medpipe.errors import ConfigError

    if not demo and not os.environ.get(SECRET_ENV) and not os.environ.get("PREFECT_API_URL"):
        # the embedded server has no Secret blocks: say what to set before starting anything
        try:
            resolve_secret()
        except ConfigError as err:
            raise _fail(err) from None


def _run_ingest(archive: Path, store: str, limit: int | None, cluster: str, demo: bool) -> dict:
    from flows.ingest import ingest_flow

    _check_secret(demo)
    return _run_flow(
        ingest_flow,
        archive=str(archive),
        store=store,
        limit=limit,
        cluster=cluster,
        demo_secret=demo,
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


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="YAML config (default built in)."),
]


def _run_flow(fn, **params):  # noqa: ANN001, ANN202 - thin front door
    """Run a flow with CLI-friendly Prefect defaults; medpipe errors exit 2 with a message."""
    _prefect_defaults()
    from medpipe.errors import MedpipeError

    try:
        return fn(**params)
    except MedpipeError as err:
        raise _fail(err) from None


def _load_config(cls, path: Path | None):  # noqa: ANN001, ANN202
    from medpipe.config import load_config
    from medpipe.errors import ConfigError

    try:
        return load_config(cls, path)
    except ConfigError as err:
        raise _fail(err) from None


@app.command()
def preprocess(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    config: ConfigOpt = None,
    cluster: ClusterOpt = "local",
    limit: Annotated[int | None, typer.Option(help="Only the first N series (dev run).")] = None,
) -> None:
    """Preprocess STORE's images into preprocessed/<config-hash>/ (pending series only)."""
    from flows.preprocess import preprocess_flow
    from medpipe.preprocess import PreprocessConfig

    cfg = _load_config(PreprocessConfig, config)
    result = _run_flow(preprocess_flow, store=store, config=cfg, cluster=cluster, limit=limit)
    console.print(
        f"preprocessed {result['done']} series ({result['skipped']} skipped) "
        f"into {store}/{result['group']}"
    )


@app.command()
def features(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    config: ConfigOpt = None,
    source: Annotated[str, typer.Option(help="images or preprocessed/<hash>")] = "images",
    cluster: ClusterOpt = "local",
) -> None:
    """Extract features of STORE's series into features/<config-hash> (xarray Dataset)."""
    from flows.features import features_flow
    from medpipe.features import FeatureConfig

    cfg = _load_config(FeatureConfig, config)
    result = _run_flow(features_flow, store=store, config=cfg, source=source, cluster=cluster)
    console.print(
        f"feature table: {store}/{result['group']}\n"
        f"  xarray.open_zarr('{store}/{result['group']}', consolidated=False)"
    )


@app.command()
def nightly(
    archive: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Archive root.")],
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    labels: Annotated[str | None, typer.Option(help="Labels CSV/Parquet.")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain the model.")] = False,
    cluster: ClusterOpt = "local",
    demo_secret: DemoSecretOpt = False,
) -> None:
    """Run the nightly flow once: ingest new/changed → preprocess → features → score."""
    from flows.nightly import nightly_flow

    _check_secret(demo_secret)
    out = _run_flow(
        nightly_flow,
        archive=str(archive),
        store=store,
        labels=labels,
        retrain=retrain,
        cluster=cluster,
        demo_secret=demo_secret,
    )
    _print_nightly(out)
    console.print(f"QA report: {store}/{out['report']}")


def _print_nightly(result: dict) -> None:
    """The ingest summary and the time of each stage of a nightly run."""
    _print_summary(result["ingest"])
    for stage, secs in result["stages"].items():
        console.print(f"  {stage:<11} {secs:6.1f} s")


@app.command()
def serve(
    archive: Annotated[str, typer.Option(envvar="MEDPIPE_ARCHIVE", help="Archive root.")],
    store: Annotated[str, typer.Option(envvar="MEDPIPE_STORE", help="Store path or URL.")],
    cron: Annotated[str, typer.Option(help="Nightly schedule.")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(envvar="MEDPIPE_TZ", help="IANA zone.")] = "UTC",
    cluster: ClusterOpt = "local",
) -> None:
    """Serve every flow (the nightly one on its schedule) until interrupted."""
    from flows.serve import serve_all

    serve_all(archive=archive, store=store, cron=cron, timezone=timezone, cluster=cluster)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the sample archive and store.")] = Path(
        "demo-output"
    ),
    cluster: ClusterOpt = "local",
    name: Annotated[str, typer.Option(help="MedMNIST set for the labelled part.")] = (
        "breastmnist"
    ),
) -> None:
    """Build the real sample archive and run the nightly job on it (incremental on reruns)."""
    from flows.nightly import nightly_flow
    from medpipe.sample import build_bundled_archive

    archive = out / "archive"
    build_bundled_archive(archive / "bundled")
    labels = _demo_medmnist(archive / "medmnist", name)
    store = str(out / "store.zarr")
    console.print(f"sample archive: {archive}")
    result = _run_flow(
        nightly_flow,
        archive=str(archive),
        store=store,
        labels=str(labels) if labels else None,
        cluster=cluster,
        demo_secret=True,
        model=name,
    )
    _print_nightly(result)
    model = result.get("model") or {}
    if model.get("metrics"):
        console.print(f"model {model['name']}:{model['version']} (cross-validated on train):")
        for line in model["metrics"].values():
            console.print(f"  {line}")
    elif model.get("note"):
        console.print(f"model: {model['note']}")
    console.print(
        f"\n[bold]store[/]: {store}\n"
        f"[bold]QA report[/]: {store}/{result['report']}\n"
        f"  medpipe info {store}\n  medpipe quarantine {store}\n"
        f"  medpipe models list {store}\n"
        f"  an image: medpipe.store.open_image('{store}', 'images/<series>'), or napari "
        f"with napari-ome-zarr: napari {store}/images/<series>\n"
        f"  features: xarray.open_zarr('{store}/{result['features']['group']}', "
        "consolidated=False)\n"
        "  the runs in the Prefect UI: run `make server`, set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api and run `make demo` again"
    )


def _demo_medmnist(folder: Path, name: str) -> Path | None:
    """Build the labelled MedMNIST archive once: $MEDPIPE_SAMPLE_NPZ, ../shared/data, download."""
    from medpipe.errors import MedpipeError
    from medpipe.sample import build_medmnist_archive, download_medmnist

    labels = folder / "labels.csv"
    if labels.exists():
        return labels
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "labeled"
    candidates = [os.environ.get("MEDPIPE_SAMPLE_NPZ"), *sorted(shared.glob(f"{name}*.npz"))]
    npz = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    try:
        npz = npz or download_medmnist(name, root=folder.parent / ".medmnist")
    except MedpipeError as err:
        console.print(
            f"no MedMNIST file found and no download possible ({err}); "
            "the demo runs without the labelled part"
        )
        return None
    console.print(f"labelled sample: {npz}")
    build_medmnist_archive(npz, folder, name=name)
    return labels


def _register_extensions() -> None:
    """Commands that live in their own modules (models: sample, train, evaluate, score)."""
    from medpipe import cli_models

    cli_models.register(app)


_register_extensions()

if __name__ == "__main__":  # pragma: no cover
    app()
