"""deploy/prefect.yaml: loaded and rendered with Prefect's own deploy machinery.

``prefect deploy`` validates the file with ``PrefectYamlModel``, substitutes
``{{ $ENV }}`` placeholders with ``apply_values`` and turns each schedule into a
``CronSchedule``; these tests do the same, then import every entrypoint and check
that it is a ``@flow`` accepting the deployment's parameters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.templating import apply_values

from .conftest import DEPLOY, load_yaml

REPO = DEPLOY.parent
FLOWS = {
    "flows/ingest.py:ingest_flow",
    "flows/preprocess.py:preprocess_flow",
    "flows/features.py:features_flow",
    "flows/train.py:train_flow",
    "flows/score.py:score_flow",
    "flows/nightly.py:nightly_flow",
}
ENV = {
    "MEDPIPE_ARCHIVE": "/srv/archive",
    "MEDPIPE_STORE": "/srv/medpipe.zarr",
    "MEDPIPE_TZ": "Europe/Paris",
}


@pytest.fixture
def deployments(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The deployments as ``prefect deploy`` sees them after env templating."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    model = PrefectYamlModel.model_validate(load_yaml("prefect.yaml"))
    configs = [d.model_dump(exclude_unset=True, mode="json") for d in model.deployments]
    return [apply_values(c, dict(os.environ), remove_notset=False) for c in configs]


def test_every_flow_has_one_deployment(deployments: list[dict[str, Any]]) -> None:
    assert {d["entrypoint"] for d in deployments} == FLOWS
    names = [d["name"] for d in deployments]
    assert len(names) == len(set(names))
    assert all(d["work_pool"]["name"] == "medpipe-pool" for d in deployments)


def test_only_documented_placeholders() -> None:
    """Every ``{{ ... }}`` is one of the env variables the README tells to export."""
    text = repr(load_yaml("prefect.yaml"))  # values only, not the comments
    found = set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", text))
    assert found == set(ENV)
    assert len(re.findall(r"\{\{", text)) == len(re.findall(r"\{\{\s*\$\w+\s*\}\}", text))
    readme = (DEPLOY / "README.md").read_text()
    assert all(name in readme for name in ENV)


def test_nightly_schedule_and_defaults(deployments: list[dict[str, Any]]) -> None:
    (nightly,) = [d for d in deployments if d["name"] == "nightly"]
    (sched,) = nightly["schedules"]
    schedule = CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
    assert schedule.cron == "0 2 * * *"
    assert schedule.timezone == ENV["MEDPIPE_TZ"]
    assert nightly["parameters"]["params"]["archive"] == ENV["MEDPIPE_ARCHIVE"]
    assert nightly["parameters"]["params"]["store"] == ENV["MEDPIPE_STORE"]
    assert nightly["concurrency_limit"]["limit"] == 1
    # no placeholder survives rendering
    assert "{{" not in repr(deployments)


def test_unknown_timezone_is_rejected() -> None:
    """The check above can fail: a bad zone is refused by the same schedule model."""
    with pytest.raises(ValueError, match="timezone"):
        CronSchedule(cron="0 2 * * *", timezone="Mars/Olympus")


@pytest.mark.parametrize("entrypoint", sorted(FLOWS))
def test_entrypoint_is_a_flow_taking_the_parameters(
    entrypoint: str, deployments: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = REPO / entrypoint.split(":")[0]
    if not path.is_file():
        pytest.skip(f"{path.relative_to(REPO)} not written yet (another issue's part)")
    monkeypatch.chdir(REPO)  # entrypoints are relative to the checkout root
    flow = load_flow_from_entrypoint(entrypoint)
    assert isinstance(flow, Flow)
    (deployment,) = [d for d in deployments if d["entrypoint"] == entrypoint]
    params = deployment.get("parameters", {})
    accepted = set(flow.parameters.properties)
    assert accepted == {"params"}, "every flow takes one pydantic model, `params`"
    assert set(params) <= accepted, f"unknown parameters {set(params) - accepted}"
    if set(flow.parameters.required or []) <= set(params):
        validated = flow.validate_parameters(params)  # types as Prefect coerces them for a run
        assert validated["params"].store == ENV["MEDPIPE_STORE"]


def test_bad_prefect_yaml_is_rejected() -> None:
    """Prefect's model refuses a malformed schedule, so the load above can fail."""
    bad = load_yaml("prefect.yaml")
    bad["deployments"][0]["schedules"] = [{"cron": "0 2 * * *", "interval": 60}]
    with pytest.raises(ValueError, match="Exactly one of"):
        PrefectYamlModel.model_validate(bad)


def test_relative_entrypoints(deploy_dir: Path) -> None:
    for d in load_yaml("prefect.yaml")["deployments"]:
        assert not Path(d["entrypoint"].split(":")[0]).is_absolute()
