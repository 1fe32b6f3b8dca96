"""The nightly deployment on a real Prefect server, triggered through the REST API.

``prefect server start`` (SQLite) and ``medpipe serve`` run as real processes (see
``conftest.py``). The test creates a run the way the UI does, waits for COMPLETED and
checks what the run left behind: its subflow runs, its artifacts, the QA report and the
store's catalog. It also checks the deployment's cron schedule on the server.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.integration.conftest import Served, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ARTIFACT_KEYS = {"nightly-summary", "nightly-qa-report", "dask-dashboard", "ingest-summary"}


def test_nightly_deployment_schedule_and_defaults(served: Served) -> None:
    dep = served.deployments["nightly"]
    assert dep["parameters"]["params"]["archive"] == str(served.archive)
    assert dep["parameters"]["params"]["store"] == str(served.store)
    crons = [
        (s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"])
        for s in dep["schedules"]
    ]
    assert crons == [("0 2 * * *", "UTC", True)]
    # the UI's Quick run starts a run only when nothing in the form schema is required
    assert not dep["parameter_openapi_schema"].get("required")
    # the other deployments are there to be started from the UI, without a schedule
    assert all(not served.deployments[n]["schedules"] for n in ("ingest", "preprocess"))


def test_nightly_run_through_rest_api(served: Served, tmp_path: Path) -> None:
    server = served.server
    dep = served.deployments["nightly"]
    store = tmp_path / "store.zarr"  # a fresh store: this run ingests everything
    # the body the UI sends for a custom run: the whole `params` form, the deployment's
    # defaults with the fields the user changed
    params = {**dep["parameters"]["params"], "store": str(store), "retrain": False}
    created = server.post(
        f"/deployments/{dep['id']}/create_flow_run",
        {
            "parameters": {"params": params},
            "state": {"type": "SCHEDULED", "message": "Run from the integration test"},
        },
    )
    assert created["parameters"]["params"]["archive"] == str(served.archive)
    run = served.wait_run(created["id"])
    assert run["state_type"] == "COMPLETED", served.explain(run)

    subflows = server.post(
        "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}
    )
    flows = {server.get(f"/flows/{r['flow_id']}")["name"]: r["state_type"] for r in subflows}
    assert flows == {"ingest": "COMPLETED", "preprocess": "COMPLETED", "features": "COMPLETED"}

    run_ids = [run["id"], *(r["id"] for r in subflows)]
    artifacts = server.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": run_ids}}})
    by_key = {a["key"]: a for a in artifacts if a["key"]}
    assert ARTIFACT_KEYS <= by_key.keys(), sorted(by_key)
    assert by_key["ingest-summary"]["flow_run_id"] != run["id"]  # published by the subflow
    for key in ARTIFACT_KEYS - {"ingest-summary"}:
        assert by_key[key]["flow_run_id"] == run["id"], key

    # the QA report link points at a file the run wrote into this run's store
    link = by_key["nightly-qa-report"]["data"]
    target = link[link.index("(") + 1 : link.rindex(")")]
    report = Path(unquote(urlparse(target).path))
    assert report.is_file(), link
    assert report.is_relative_to(store / "reports")
    assert report.read_text().lstrip().lower().startswith(("<!doctype html", "<html"))

    # the catalog agrees with the archive: two real series in, the junk file quarantined
    from medpipe import catalog

    status = catalog.current(str(store))["status"].to_dict()
    assert status == {
        "CT_small.dcm": "ingested",
        "MR_small.dcm": "ingested",
        "not-dicom.dcm": "quarantined",
    }


def test_cron_schedule_creates_upcoming_runs(served: Served) -> None:
    """The server's scheduler turns ``0 2 * * *`` (UTC) into scheduled runs at 02:00."""
    dep = served.deployments["nightly"]
    body = {
        "deployments": {"id": {"any_": [dep["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }

    def upcoming() -> list[dict]:
        return [r for r in served.server.post("/flow_runs/filter", body) if r["auto_scheduled"]]

    runs = wait_for(
        upcoming, timeout=150, what="auto-scheduled nightly runs", services=served.services()
    )
    for r in runs:
        when = datetime.fromisoformat(r["expected_start_time"].replace("Z", "+00:00"))
        assert (when.utcoffset().total_seconds(), when.hour, when.minute, when.second) == (
            0,
            2,
            0,
            0,
        ), r["expected_start_time"]
