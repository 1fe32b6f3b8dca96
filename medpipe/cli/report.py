"""``medpipe report``: write the QA report of any run of a store."""

from __future__ import annotations

from typing import Annotated

import typer

from medpipe.cli.common import StoreArg, console, fail

__all__ = ["report"]


def report(
    store: StoreArg,
    run: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest run).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="PSI at or above which a feature is flagged (default 0.2)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the run's, else the store's).")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Feature table, features/<hash> (default: the model's).")
    ] = None,
) -> None:
    """Write STORE/reports/<run-id>/ (index.html, figures, report.json) for a run."""
    from medpipe.catalog import new_run_id
    from medpipe.errors import MedpipeError
    from medpipe.report import DEFAULT_PSI_THRESHOLD, report_url, write_report
    from medpipe.store import WRITE_LOCK, store_lock

    try:
        with store_lock(store, WRITE_LOCK, owner=f"report-{new_run_id()}"):
            with console.status("computing the QA report…"):
                path, rep = write_report(
                    store,
                    run,
                    threshold=DEFAULT_PSI_THRESHOLD if threshold is None else threshold,
                    model=model,
                    features=features,
                )
    except MedpipeError as err:
        raise fail(err) from None
    flagged = rep.flagged
    if rep.drift:
        console.print(
            f"{len(flagged)} of {len(rep.drift)} features drifted (PSI ≥ {rep.threshold:g}) "
            f"against {rep.reference}"
        )
        for d in flagged[:10]:
            console.print(f"  {d.feature}  PSI {d.psi:.3f}  KS {d.ks:.3f} (p {d.ks_pvalue:.2g})")
    else:
        console.print("no drift check: no new samples with features, or no training set")
    console.print(f"QA report: {report_url(store, path)}", soft_wrap=True)  # one line: a URL
