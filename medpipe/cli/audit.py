"""``medpipe audit``: search everything medpipe wrote for the archive's identifying values.

The scanning is :mod:`medpipe.audit`'s; this command adds Prefect's side, which only
the front door may touch: the flow-run logs and artifacts, read with Prefect's client
when ``PREFECT_API_URL`` is set, else from the embedded server's SQLite database
(``$PREFECT_HOME/prefect.db``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer

from medpipe.cli.common import JsonOpt, StoreArg, console, fail

__all__ = ["audit", "prefect_texts"]

#: Logs and artifacts read per request from the Prefect API.
_PAGE = 200


def _api_texts(client: Any) -> list[tuple[str, str]]:
    """Flow-run logs and artifacts from a Prefect API (public client calls only)."""
    names: dict[Any, str] = {}
    offset = 0
    while page := client.read_flow_runs(limit=_PAGE, offset=offset):
        names.update({r.id: r.name for r in page})
        offset += len(page)
    out: list[tuple[str, str]] = []
    offset = 0
    while page := client.read_logs(limit=_PAGE, offset=offset):
        for log in page:
            run = names.get(log.flow_run_id, str(log.flow_run_id))
            out.append((f"Prefect log of flow run {run!r} ({log.flow_run_id})", log.message))
        offset += len(page)
    offset = 0
    while page := client.read_artifacts(limit=_PAGE, offset=offset):
        for art in page:
            run = names.get(art.flow_run_id, str(art.flow_run_id))
            data = art.data if isinstance(art.data, str) else json.dumps(art.data, default=str)
            text = "\n".join(str(x) for x in (art.key, art.description, data) if x)
            out.append((f"Prefect artifact {art.key or art.id!s} of flow run {run!r}", text))
        offset += len(page)
    return out


def _sqlite_texts(db: Path) -> list[tuple[str, str]]:
    """Flow-run logs and artifacts from the embedded server's SQLite database (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = dict(con.execute("SELECT id, name FROM flow_run"))
        out = [
            (f"Prefect log of flow run {names.get(run, run)!r} ({run})", str(msg))
            for run, msg in con.execute("SELECT flow_run_id, message FROM log")
        ]
        for key, run, desc, data in con.execute(
            "SELECT key, flow_run_id, description, data FROM artifact"
        ):
            text = "\n".join(str(x) for x in (key, desc, data) if x)
            out.append((f"Prefect artifact {key!s} of flow run {names.get(run, run)!r}", text))
        return out
    finally:
        con.close()


def prefect_texts() -> tuple[list[tuple[str, str]], str]:
    """Every Prefect flow-run log and artifact, and a line saying where they came from.

    Returns
    -------
    texts, origin
        ``(location, text)`` pairs, and e.g. ``Prefect API http://…`` or ``no Prefect
        database at …``.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return _api_texts(client), f"Prefect API {settings.api.url}"
    url = settings.server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    if not url.startswith("sqlite"):
        return [], "Prefect's database is not SQLite: set PREFECT_API_URL to audit its logs"
    db = Path(url.split(":///", 1)[-1].split("?", 1)[0]).expanduser()
    if not db.is_file():
        return [], f"no Prefect database at {db} (no flow has run with this PREFECT_HOME)"
    try:
        return _sqlite_texts(db), f"Prefect database {db}"
    except sqlite3.Error as err:
        return [], f"Prefect database {db} not readable ({err})"


def audit(
    store: StoreArg,
    archive: Annotated[
        Path,
        typer.Option("--archive", exists=True, file_okay=False, help="The archive STORE holds."),
    ],
    prefect: Annotated[
        bool, typer.Option(help="Also search Prefect's flow-run logs and artifacts.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Search STORE (and Prefect's logs) for the identifying values of ARCHIVE.

    Exits 1 when any value is found (each hit is printed with where it is), 0 when none.
    """
    from medpipe.audit import MIN_DIGITS, MIN_LETTERS, audit_store, collect_values
    from medpipe.catalog import scan
    from medpipe.errors import MedpipeError
    from medpipe.progress import progress_bar

    try:
        files = scan(archive)
        with progress_bar(len(files), "audit: read headers") as advance:
            values = collect_values(archive, files=files, advance=advance)
        texts, origin = prefect_texts() if prefect else ([], "Prefect not searched (--no-prefect)")
        with console.status("scanning the store…"):
            result = audit_store(store, archive, texts=texts, values=values)
    except MedpipeError as err:
        raise fail(err) from None
    if as_json:
        doc = {**result.record(), "hits": [vars(h) for h in result.hits]}
        typer.echo(json.dumps(doc))
        raise typer.Exit(code=1 if result.hits else 0)
    console.print(
        f"values: {result.values} identifying values from {result.headers} DICOM headers and "
        f"{result.paths} archive paths (words from {MIN_LETTERS} letters or {MIN_DIGITS} "
        "digits, common words skipped)"
    )
    console.print(f"scanned: {result.files} store files; {origin}: {result.texts} logs/artifacts")
    if result.allowed:
        console.print(
            f"not scanned: catalog/ ({len(result.allowed)} files), the one place that holds "
            "archive paths, for operators (medpipe quarantine)"
        )
    if result.hits:
        from rich.markup import escape

        console.print(f"[bold]identifying values found[/] ({len(result.hits)}):")
        for h in result.hits:  # one line each (no folding), for grep
            console.print(f"  {escape(h.location)}: {escape(h.value)!r} ({h.source})",
                          soft_wrap=True, highlight=False)
    style = "bold red" if result.hits else "bold green"
    console.print(f"[{style}]{result.summary_line()}[/]", soft_wrap=True)
    raise typer.Exit(code=1 if result.hits else 0)
