"""Serve every medpipe flow from one process (a laptop or a single server).

``medpipe serve`` calls :func:`serve_all`: the nightly flow runs on its cron schedule,
the others are there to be started from the Prefect UI with their parameter forms.
For a work-pool based setup use ``deploy/prefect.yaml`` instead.
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.features import features_flow
from flows.ingest import ingest_flow
from flows.nightly import nightly_flow
from flows.preprocess import preprocess_flow
from flows.score import score_flow
from flows.train import train_flow

__all__ = ["deployments", "serve_all"]


def deployments(
    *,
    archive: str,
    store: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    cluster: str = "local",
) -> list:
    """Runner deployments of all flows, with defaults pointing at ``archive`` and ``store``.

    Every flow takes one pydantic ``params`` model; a deployment's default is that
    model's fields the deployment fills in (a run sends the whole model, as the form does).
    """
    common = {"store": store, "cluster": cluster}
    with_archive = {"params": {"archive": archive, **common}}
    out = [
        nightly_flow.to_deployment(
            name="nightly",
            schedules=[Cron(cron, timezone=timezone)],
            parameters=with_archive,
            tags=["medpipe"],
            description="Nightly: ingest new/changed series, preprocess, features, score.",
        ),
        ingest_flow.to_deployment(name="ingest", parameters=with_archive, tags=["medpipe"]),
        preprocess_flow.to_deployment(
            name="preprocess", parameters={"params": common}, tags=["medpipe"]
        ),
        features_flow.to_deployment(
            name="features", parameters={"params": common}, tags=["medpipe"]
        ),
    ]
    out += [
        train_flow.to_deployment(name="train", tags=["medpipe"]),
        score_flow.to_deployment(name="score", tags=["medpipe"]),
    ]
    return [_defaults_satisfy_required(d) for d in out]


def _defaults_satisfy_required(deployment):  # noqa: ANN001, ANN202
    """A parameter the deployment supplies is no longer required in its form schema.

    The Prefect UI's Quick run opens the parameter form instead of starting a run
    whenever the schema lists a required parameter, even one the deployment fills in.
    """
    schema = deployment._parameter_openapi_schema  # no public setter in Prefect 3.8
    for key, value in deployment.parameters.items():
        if key in schema.properties:
            schema.properties[key]["default"] = value
    schema.required = [k for k in schema.required or [] if k not in deployment.parameters]
    return deployment


def serve_all(**kwargs: str) -> None:
    """Serve :func:`deployments` until interrupted."""
    serve(*deployments(**kwargs))
