"""The ``medpipe`` command: the front door that starts flows and inspects stores.

``medpipe.cli:app`` is the entry point.  :mod:`medpipe.cli.common` holds what every
command shares; each other module holds one group of commands.  Nothing else in
medpipe imports this package.
"""

from __future__ import annotations

import typer

from medpipe.cli import audit as _audit
from medpipe.cli import ingest as _ingest
from medpipe.cli import models as _models
from medpipe.cli import nightly as _nightly
from medpipe.cli import predict as _predict
from medpipe.cli import reindex as _reindex
from medpipe.cli import report as _report
from medpipe.cli import stages as _stages
from medpipe.cli.common import prefect_defaults

__all__ = ["app"]

app = typer.Typer(
    name="medpipe",
    help="Imaging archive → de-identified OME-Zarr → Dask preprocessing/features → dask-ml.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """Set quiet, offline-friendly defaults before Prefect or Dask are imported."""
    prefect_defaults()


for _command in (
    _ingest.ingest,
    _ingest.info,
    _ingest.quarantine,
    _stages.preprocess,
    _stages.features,
    _nightly.nightly,
    _nightly.serve,
    _nightly.demo,
    _report.report,
    _audit.audit,
    _reindex.reindex,
):
    app.command()(_command)
app.add_typer(_models.sample_app, name="sample")
app.add_typer(_models.models_app, name="models")
for _command in (_models.train, _models.evaluate, _models.score, _predict.predict):
    app.command()(_command)

if __name__ == "__main__":  # pragma: no cover
    app()
