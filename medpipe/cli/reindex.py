"""``medpipe reindex``: rebuild the store's outputs index from what the store holds.

The outputs index (:mod:`medpipe.store.outputs`) is what makes "what is pending?" cost
O(changes).  A store made before the index, or one whose index is in doubt, gets it
back from its images, preprocessed images, feature and score tables with this command
(one pass over their metadata).  ``--check`` only compares the rebuilt index with the
live one and exits 1 when they differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from medpipe.cli.common import StoreArg, console, fail

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["reindex"]


def _counts(frame: pd.DataFrame | None) -> dict[str, int]:
    """Entries per kind of output (``images``, ``preprocessed`` …)."""
    if frame is None or frame.empty:
        return {}
    kinds = frame["output"].str.split("/").str[0]
    return {str(k): int(v) for k, v in kinds.value_counts().sort_index().items()}


def reindex(
    store: StoreArg,
    check: Annotated[
        bool,
        typer.Option("--check", help="Only compare the rebuilt index with the live one "
                                     "(exit 1 when they differ); write nothing."),
    ] = False,
) -> None:
    """Rebuild STORE's outputs index (which series has which output) from the store."""
    from medpipe.catalog import new_run_id
    from medpipe.errors import MedpipeError
    from medpipe.models.registry import registry_lock
    from medpipe.store import outputs

    try:
        if check:
            with console.status("reading the store's outputs…"):
                rebuilt = outputs.rebuild(store)
                live = outputs.read_index(store)
            if live is None:
                console.print(f"{store}: no outputs index yet (run medpipe reindex {store})")
                raise typer.Exit(code=1)
            same = outputs.same_index(rebuilt, live)
            console.print(f"outputs index {'matches' if same else 'DIFFERS from'} the store "
                          f"({len(live)} live entries, {len(rebuilt)} rebuilt)")
            raise typer.Exit(code=0 if same else 1)
        run_id = new_run_id()
        # no stage writes meanwhile (write lock, in reindex) and no score (models lock)
        with registry_lock(store), console.status("rebuilding the outputs index…"):
            n = outputs.reindex(store, owner=run_id)
            rebuilt = outputs.read_index(store)
    except MedpipeError as err:
        raise fail(err) from None
    parts = ", ".join(f"{k} {v}" for k, v in _counts(rebuilt).items()) or "nothing yet"
    console.print(f"outputs index rebuilt: {n} entries ({parts})")
