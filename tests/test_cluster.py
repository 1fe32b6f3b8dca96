"""Cluster spec parsing."""

from __future__ import annotations

import pytest

from medpipe.cluster import parse_spec
from medpipe.errors import ConfigError


def test_specs() -> None:
    assert parse_spec(None).kind == "local"
    assert parse_spec("local:3").options["n_workers"] == 3
    assert parse_spec("local").options["threads_per_worker"] == 1
    spec = parse_spec("tcp://127.0.0.1:8786")
    assert (spec.kind, spec.address) == ("address", "tcp://127.0.0.1:8786")
    assert parse_spec("slurm").kind == "slurm"


@pytest.mark.parametrize("bad", ["lokal", "local:x", "http://x"])
def test_bad_specs_fail_fast(bad: str) -> None:
    with pytest.raises(ConfigError, match="cluster spec"):
        parse_spec(bad)
