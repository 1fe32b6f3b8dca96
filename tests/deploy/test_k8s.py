"""deploy/k8s/: the DaskCluster manifest and the prefect-worker Helm values.

The manifest is validated against the DaskCluster CRD schema that the
``dask-kubernetes`` package ships (the one its Helm chart installs), made strict the
way ``kubectl apply --validate=strict`` is (unknown fields are errors), and compared
with what the operator's own ``make_cluster_spec`` generates.  No package ships the
prefect-worker chart's values schema, so the Helm values are checked for the keys
the chart reads, and their Kubernetes-typed parts (env, resources, security
contexts) against the same Kubernetes core schemas embedded in that CRD.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import load_yaml


def _strict(schema: Any) -> Any:
    """Forbid unknown fields wherever the schema lists the allowed properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    import dask_kubernetes

    root = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
    crd = yaml.safe_load(
        (root / "dask-kubernetes-operator" / "crds" / "daskcluster.yaml").read_text()
    )
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert crd["spec"]["names"]["kind"] == "DaskCluster"
    return _strict(version["schema"]["openAPIV3Schema"])


def _validate(doc: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema).validate(doc)


def test_daskcluster_manifest_matches_the_crd(crd_schema: dict[str, Any]) -> None:
    doc = load_yaml("k8s/daskcluster.yaml")
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    assert doc["kind"] == "DaskCluster"
    body = {k: v for k, v in doc.items() if k in ("spec", "status")}
    _validate(body, crd_schema)


def test_a_typo_is_caught(crd_schema: dict[str, Any]) -> None:
    doc = copy.deepcopy(load_yaml("k8s/daskcluster.yaml"))
    doc["spec"]["worker"]["replica"] = doc["spec"]["worker"].pop("replicas")
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        _validate({"spec": doc["spec"]}, crd_schema)
    doc = copy.deepcopy(load_yaml("k8s/daskcluster.yaml"))
    doc["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = 2
    with pytest.raises(jsonschema.ValidationError):
        _validate({"spec": doc["spec"]}, crd_schema)


def test_daskcluster_follows_the_operator_template() -> None:
    """Same wiring as dask-kubernetes' ``make_cluster_spec``: names, ports, selector."""
    from dask_kubernetes.operator import make_cluster_spec

    doc = load_yaml("k8s/daskcluster.yaml")
    name = doc["metadata"]["name"]
    ref = make_cluster_spec(name=name, image="x", n_workers=1)["spec"]
    spec = doc["spec"]
    assert spec["scheduler"]["service"]["selector"] == ref["scheduler"]["service"]["selector"]

    def ports(part: dict[str, Any]) -> set[tuple[str, int]]:
        return {(p["name"], p["containerPort"]) for p in part["spec"]["containers"][0]["ports"]}

    assert ports(spec["scheduler"]) == ports(ref["scheduler"])
    assert ports(spec["worker"]) == ports(ref["worker"])
    svc = {(p["name"], p["port"]) for p in spec["scheduler"]["service"]["ports"]}
    assert svc == {(p["name"], p["port"]) for p in ref["scheduler"]["service"]["ports"]}
    assert spec["worker"]["spec"]["containers"][0]["args"][0] == "dask-worker"
    assert spec["scheduler"]["spec"]["containers"][0]["args"][0] == "dask-scheduler"
    # the worker's memory limit fits its container
    from dask.utils import parse_bytes

    w = spec["worker"]["spec"]["containers"][0]
    limit = parse_bytes(w["args"][w["args"].index("--memory-limit") + 1])
    nthreads_ok = w["args"][w["args"].index("--nthreads") + 1].isdigit()
    assert nthreads_ok and limit <= parse_bytes(w["resources"]["limits"]["memory"] + "B")


def test_prefect_worker_values(crd_schema: dict[str, Any]) -> None:
    values = load_yaml("k8s/prefect-worker-values.yaml")
    worker = values["worker"]
    assert set(values) <= {"worker", "serviceAccount", "role", "rolebinding", "fullnameOverride"}
    assert worker["apiConfig"] == "server"
    assert worker["serverApiConfig"]["apiUrl"].endswith("/api")
    assert worker["config"]["workPool"] and worker["config"]["type"] == "kubernetes"
    container = crd_schema["properties"]["spec"]["properties"]["worker"]["properties"]["spec"]
    pod = container["properties"]
    c = pod["containers"]["items"]["properties"]
    _validate(worker["extraEnvVars"], c["env"])
    _validate(worker["resources"], c["resources"])
    _validate(worker["containerSecurityContext"], c["securityContext"])
    _validate(worker["podSecurityContext"], pod["securityContext"])
    # the basic-auth string comes from a Secret, never from this file
    env = {e["name"]: e for e in worker["extraEnvVars"]}
    auth = env["PREFECT_API_AUTH_STRING"]
    assert "value" not in auth and auth["valueFrom"]["secretKeyRef"]["name"]
