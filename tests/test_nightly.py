"""The nightly plan: which stages run, decided from metadata alone (no Prefect)."""

from __future__ import annotations

import pytest

from medpipe.catalog import Diff, FileStat
from medpipe.ingest import start_summary
from medpipe.nightly import NOTHING_TO_DO, plan_nightly, skipped_results

F = FileStat("a.dcm", 10, 1)
G = FileStat("b.dcm", 20, 2)


def _plan(delta: Diff, pending: list[str], stale: list[str]):  # noqa: ANN202
    return plan_nightly(
        delta=delta,
        pending_preprocess=pending,
        stale_features=stale,
        preprocess_group="preprocessed/p",
        features_group="features/f-p",
    )


@pytest.mark.parametrize(
    ("delta", "pending", "stale", "expected"),
    [
        (Diff(unchanged=3), [], [], (False, False, False)),  # a night without changes
        (Diff(new=[F], unchanged=2), [], [], (True, True, True)),  # new files cascade
        (Diff(changed=[F]), [], [], (True, True, True)),
        (Diff(missing=["gone.dcm"]), [], [], (True, False, False)),  # nothing to read
        (Diff(unchanged=2), ["k1"], [], (False, True, True)),  # a pending series
        (Diff(unchanged=2), [], ["k1"], (False, False, True)),  # stale features only
    ],
)
def test_stages_run_when_they_or_an_earlier_stage_have_work(
    delta: Diff, pending: list[str], stale: list[str], expected: tuple[bool, bool, bool]
) -> None:
    plan = _plan(delta, pending, stale)
    assert (plan.ingest, plan.preprocess, plan.features) == expected
    assert plan.any_work == any(expected)
    assert (plan.preprocess_group, plan.features_group) == ("preprocessed/p", "features/f-p")


def test_skipped_results_say_why_and_count_the_scan() -> None:
    delta = Diff(unchanged=2)
    plan = _plan(delta, [], [])
    ingest, pre, feat = skipped_results(plan, run_id="r1", files=[F, G], delta=delta)
    assert (ingest.run_id, ingest.scanned, ingest.unchanged, ingest.new) == ("r1", 2, 2, 0)
    assert pre.skipped == feat.skipped == NOTHING_TO_DO
    assert (pre.group, pre.done) == ("preprocessed/p", 0)
    assert (feat.group, feat.computed) == ("features/f-p", 0)


def test_start_summary_counts_the_diff() -> None:
    delta = Diff(new=[F], changed=[G], unchanged=5, missing=["x", "y"])
    s = start_summary("r2", [F, G, *[FileStat(f"u{i}", 1, 1) for i in range(5)]], delta)
    assert (s.scanned, s.new, s.changed, s.unchanged, s.missing) == (7, 1, 1, 5, 2)
    assert s.series_ingested == s.quarantined == 0 and s.reasons == {}
