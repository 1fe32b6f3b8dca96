"""What every ``medpipe`` command shares: the console, errors, option types, flow runs.

Nothing here imports Prefect, Dask or the flows at import time: commands import what
they run, so ``medpipe --help`` stays fast.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "console",
    "fail",
    "run_flow",
    "prefect_defaults",
    "check_secret",
    "load_stage_config",
    "print_summary",
    "print_nightly",
    "print_listing",
    "JsonOpt",
    "TsvOpt",
    "ClusterOpt",
    "DemoSecretOpt",
    "ConfigOpt",
    "StoreArg",
    "absolute_local",
    "ModelOpt",
]

T = TypeVar("T")

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
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="YAML config (default built in)."),
]


def absolute_local(value: str) -> str:
    """A local path made absolute; a URL (``s3://``, ``dicomweb+http://`` …) unchanged.

    Paths go to the cluster's workers as they are: a relative one would be resolved
    against each worker's own working directory (``--cluster tcp://…``, SLURM).
    """
    if "://" in value:
        return value
    return os.path.abspath(value)


StoreArg = Annotated[
    str, typer.Argument(callback=absolute_local, help="Store path or fsspec URL.")
]
ModelOpt = Annotated[str, typer.Option("--model", help="NAME or NAME:VERSION (default latest).")]

#: The ingest summary's rows, in print order.
SUMMARY_KEYS = (
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


def prefect_defaults() -> None:
    """Quiet, offline-friendly Prefect defaults for command-line runs (overridable)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # the embedded server's 20 s default start-up wait times out on a busy 2-core laptop
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # dask's own INFO chatter
    # dask-ml's searches set the deprecated 'fuse_ave_width' key: one FutureWarning per fit
    quiet = "ignore::FutureWarning:dask.config"
    current = os.environ.get("PYTHONWARNINGS", "")
    if quiet not in current:  # for the worker processes
        os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet
    warnings.filterwarnings("ignore", category=FutureWarning, module="dask.config")


def fail(err: Exception) -> typer.Exit:
    """Print ``err`` and return the exit (code 2) to raise.

    The message is printed as it is (a ``[`` in a path is not markup) and on one line: the
    terminal folds it, so a long store path in it stays one path to copy.
    """
    console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
    return typer.Exit(code=2)


def check_secret(demo: bool) -> None:
    """Fail before starting anything when no secret can be found (embedded server case)."""
    from medpipe.config import env_defaults, resolve_secret
    from medpipe.errors import ConfigError

    env = env_defaults()
    if not demo and not env.secret_set and not env.prefect_api:
        # the embedded server has no Secret blocks: say what to set before starting anything
        try:
            resolve_secret()
        except ConfigError as err:
            raise fail(err) from None


def run_flow(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a flow with CLI-friendly Prefect defaults; medpipe errors exit 2 with a message.

    Log handlers on stderr (Prefect's console handler) print above the progress bars
    (:func:`medpipe.progress.route_stderr_handlers`): one Rich console on stderr.
    """
    prefect_defaults()
    from medpipe.errors import MedpipeError
    from medpipe.progress import route_stderr_handlers

    route_stderr_handlers()

    try:
        return fn(*args, **kwargs)
    except MedpipeError as err:
        raise fail(err) from None


def load_stage_config(cls: type[T], path: Path | None) -> T:
    """:func:`medpipe.config.load_config`, exiting 2 with the message on a bad file."""
    from medpipe.config import load_config
    from medpipe.errors import ConfigError

    try:
        return load_config(cls, path)
    except ConfigError as err:
        raise fail(err) from None


def print_summary(summary: Any) -> None:
    """The table of an :class:`~medpipe.ingest.IngestSummary`."""
    table = Table(title=f"ingest run {summary.run_id}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for k in SUMMARY_KEYS:
        table.add_row(k.replace("_", " "), str(getattr(summary, k)))
    console.print(table)


def print_nightly(result: Any) -> None:
    """The ingest summary and stage times of a :class:`~medpipe.results.NightlyResult`."""
    print_summary(result.ingest)
    for stage, secs in result.stages.items():
        console.print(f"  {stage:<11} {secs:6.1f} s")


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (a list of objects) for scripts.")
]
TsvOpt = Annotated[
    bool, typer.Option("--tsv", help="Print tab-separated rows with a header, for scripts.")
]


def print_listing(
    title: str,
    columns: list[str],
    rows: list[list[Any]],
    as_json: bool = False,
    as_tsv: bool = False,
) -> None:
    """Print a listing as a table that folds long cells, as JSON, or as TSV.

    Parameters
    ----------
    title : str
        Table title (table format only).
    columns : list of str
        Column names; the JSON objects' keys and the TSV header.
    rows : list of list
        One list of cell values per row, in ``columns`` order.
    as_json : bool
        Print one JSON document: a list of objects keyed by ``columns``.
    as_tsv : bool
        Print a header and tab-separated rows (tabs and newlines in cells become spaces).

    Raises
    ------
    typer.BadParameter
        If both ``as_json`` and ``as_tsv`` are set.
    """
    import json

    if as_json and as_tsv:
        raise typer.BadParameter("--json and --tsv are exclusive")
    if as_json:
        typer.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
        return
    if as_tsv:

        def cell(v: Any) -> str:
            return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")

        typer.echo("\t".join(columns))
        for r in rows:
            typer.echo("\t".join(cell(v) for v in r))
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=False)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    console.print(table)
