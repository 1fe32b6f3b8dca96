"""``medpipe nightly``, ``serve`` and ``demo``: the whole pipeline, once or on a schedule."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medpipe.cli.common import (
    ClusterOpt,
    DemoSecretOpt,
    StoreArg,
    absolute_local,
    check_secret,
    console,
    fail,
    print_nightly,
    run_flow,
)
from medpipe.cli.ingest import ArchiveArg, ConcurrencyOpt

if TYPE_CHECKING:
    from medpipe.results import NightlyResult

__all__ = ["nightly", "serve", "demo"]


def nightly(
    archive: ArchiveArg,
    store: StoreArg,
    labels: Annotated[str | None, typer.Option(help="Labels CSV/Parquet.")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain the model.")] = False,
    cluster: ClusterOpt = "local",
    demo_secret: DemoSecretOpt = False,
    concurrency: ConcurrencyOpt = 4,
) -> None:
    """Run the nightly flow once: ingest new/changed → preprocess → features → score."""
    from medpipe.nightly import NIGHTLY_MODEL

    check_secret(demo_secret)
    out = (
        None
        if retrain
        else _idle(archive, store, model=NIGHTLY_MODEL, labels=labels, demo_secret=demo_secret)
    )
    if out is not None:
        print_nightly(out)
        return
    from flows.nightly import NightlyParams, nightly_flow

    params = NightlyParams(
        archive=archive,
        store=store,
        labels=labels,
        retrain=retrain,
        cluster=cluster,
        demo_secret=demo_secret,
        concurrency=concurrency,
    )
    out = run_flow(nightly_flow, params)
    print_nightly(out)
    console.print(
        f"QA report: {store}/{out.report}" if out.report else "nothing changed: no QA report"
    )


def serve(
    archive: Annotated[
        str | None,
        typer.Option(
            help="Archive folder or URL (s3://…, dicomweb+https://…; default $MEDPIPE_ARCHIVE)."
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Store path or URL (default $MEDPIPE_STORE).")
    ] = None,
    cron: Annotated[str, typer.Option(help="Nightly schedule.")] = "0 2 * * *",
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone (default $MEDPIPE_TZ, else UTC).")
    ] = None,
    cluster: ClusterOpt = "local",
) -> None:
    """Serve every flow (the nightly one on its schedule) until interrupted."""
    from medpipe.config import ARCHIVE_ENV, STORE_ENV, env_defaults
    from medpipe.errors import ConfigError

    env = env_defaults()
    archive = archive or env.archive
    store = store or env.store
    for value, option, var in ((archive, "--archive", ARCHIVE_ENV), (store, "--store", STORE_ENV)):
        if not value:
            raise fail(ConfigError(f"missing {option}: pass it or set {var}"))
    archive, store = absolute_local(str(archive)), absolute_local(str(store))
    from flows.serve import serve_all

    serve_all(
        archive=archive, store=store, cron=cron, timezone=timezone or env.timezone, cluster=cluster
    )


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
    from medpipe.sample import build_bundled_archive

    archive = out.resolve() / "archive"  # absolute: the workers may run elsewhere
    build_bundled_archive(archive / "bundled")
    labels = _demo_medmnist(archive / "medmnist", name)
    store = str(archive.parent / "store.zarr")
    console.print(f"sample archive: {archive}")
    result = _idle(str(archive), store, model=name, labels=labels, demo_secret=True)
    if result is None:
        from flows.nightly import NightlyParams, nightly_flow

        params = NightlyParams(
            archive=str(archive),
            store=store,
            labels=str(labels) if labels else None,
            cluster=cluster,
            demo_secret=True,
            model=name,
        )
        result = run_flow(nightly_flow, params)
    print_nightly(result)
    model = result.model
    if model.metrics:
        console.print(f"model {model.name}:{model.version} (cross-validated on train):")
        for line in model.metrics.values():
            console.print(f"  {line}")
    elif model.note:
        console.print(f"model: {model.note}")
    evaluation = model.trained.evaluation if model.trained else None
    if evaluation:
        console.print(f"held-out {evaluation.split} (n={evaluation.n}, never used for selection):")
        for line in evaluation.lines:
            console.print(f"  {line}")
    console.print(
        f"\n[bold]store[/]: {store}\n"
        f"[bold]QA report[/]: {store}/{result.report or '(nothing changed, none written)'}\n"
        f"  medpipe info {store}\n  medpipe quarantine {store}\n"
        f"  medpipe models list {store}\n"
        f"  an image: medpipe.store.open_image('{store}', 'images/<series>'), or napari "
        f"with napari-ome-zarr: napari {store}/images/<series>\n"
        f"  features: xarray.open_zarr('{store}/{result.features.group}', "
        "consolidated=False)\n"
        "  the runs in the Prefect UI: run `make server`, set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api and run `make demo` again"
    )


def _demo_medmnist(folder: Path, name: str) -> Path | None:
    """The labelled MedMNIST archive: $MEDPIPE_SAMPLE_NPZ, else the packaged file, else download."""
    from medpipe.config import env_defaults
    from medpipe.errors import MedpipeError
    from medpipe.sample import demo_medmnist_archive

    try:
        labels, source = demo_medmnist_archive(folder, name, npz=env_defaults().sample_npz)
    except MedpipeError as err:
        console.print(
            f"no MedMNIST file found and no download possible ({err}); "
            "the demo runs without the labelled part"
        )
        return None
    if source is not None:
        console.print(f"labelled sample: {source}")
    return labels


def _idle(
    archive: str, store: str, *, model: str, labels: str | Path | None, demo_secret: bool
) -> NightlyResult | None:
    """The run's result when it has nothing to do, found before Prefect starts.

    Only for a local archive and Prefect's embedded server: a run against a Prefect
    server always starts the flow (each run shows in the UI), and a remote archive's
    credentials may be Prefect Secret blocks.  Any error leaves the run to the flow,
    which reports it.
    """
    from medpipe.config import env_defaults, resolve_secret
    from medpipe.errors import MedpipeError

    if env_defaults().prefect_api or "://" in archive:
        return None
    from medpipe.nightly import idle_result

    start = time.perf_counter()
    try:
        result = idle_result(
            absolute_local(store),
            archive,
            model=model,
            labels=labels,
            secret=lambda: resolve_secret(allow_demo=demo_secret),
        )
    except (MedpipeError, OSError):
        return None
    if result is not None:
        console.print(
            f"nothing changed since the last run (checked in "
            f"{time.perf_counter() - start:.1f} s): no flow started, no QA report"
        )
    return result
