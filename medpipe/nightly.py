"""What a nightly run has to do, decided from metadata alone (no Prefect, no I/O).

The nightly flow gathers a few facts before starting anything (the archive's diff
against the catalog, the series pending preprocessing, the series whose features are
stale) and :func:`plan_nightly` turns them into a :class:`NightlyPlan`.  A stage runs
when it has work now or when an earlier stage of the same run will give it work:
ingested images may need preprocessing, new preprocessed images new features.  A night
with nothing new runs no stage and starts no cluster.

:func:`skipped_results` gives the results of the stages the plan leaves out, so the
flow never assembles another stage's result by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medpipe.catalog import Diff, FileStat
from medpipe.ingest import IngestSummary, start_summary
from medpipe.results import FeatureResult, PreprocessResult

__all__ = ["NightlyPlan", "plan_nightly", "skipped_results", "NOTHING_TO_DO", "COMPACT_AFTER"]

#: The ``skipped`` reason of a stage with no work.
NOTHING_TO_DO = "nothing new"
#: A nightly run folds the catalog and the outputs index into one snapshot each
#: (:func:`medpipe.catalog.compact`, :func:`medpipe.store.outputs.compact`) once a reader
#: of either would open at least this many files: reading them stays O(1) files.
COMPACT_AFTER = 64


@dataclass(frozen=True)
class NightlyPlan:
    """Which stages of a nightly run have work, and the groups they write.

    Attributes
    ----------
    ingest, preprocess, features
        Whether the stage runs.
    preprocess_group
        ``preprocessed/<cfg-hash>``: the preprocess output and the feature source.
    features_group
        The feature table the model stage trains on and scores.
    """

    ingest: bool
    preprocess: bool
    features: bool
    preprocess_group: str
    features_group: str

    @property
    def any_work(self) -> bool:
        """True when at least one data stage runs (the cluster is needed)."""
        return self.ingest or self.preprocess or self.features


def plan_nightly(
    *,
    delta: Diff,
    pending_preprocess: Sequence[str],
    stale_features: Sequence[str],
    preprocess_group: str,
    features_group: str,
) -> NightlyPlan:
    """Decide the stages of a nightly run.

    Parameters
    ----------
    delta
        The archive's scan diffed against the catalog (:func:`medpipe.catalog.diff`).
    pending_preprocess
        Series without a preprocessed output for the run's config, before ingest.
    stale_features
        Series of the preprocessed group whose features are missing or outdated.
    preprocess_group, features_group
        The groups the run's configs write.

    Returns
    -------
    NightlyPlan
        Ingest runs for new, changed or missing files; preprocess when series are
        pending or ingest will read files; features when features are stale or
        preprocess runs.
    """
    ingest = bool(delta.todo or delta.missing)
    preprocess = bool(pending_preprocess) or bool(delta.todo)
    features = bool(stale_features) or preprocess
    return NightlyPlan(
        ingest=ingest,
        preprocess=preprocess,
        features=features,
        preprocess_group=preprocess_group,
        features_group=features_group,
    )


def skipped_results(
    plan: NightlyPlan, *, run_id: str, files: Sequence[FileStat], delta: Diff
) -> tuple[IngestSummary, PreprocessResult, FeatureResult]:
    """The results of the stages a plan does not run (used where the plan says so).

    Returns
    -------
    tuple of (IngestSummary, PreprocessResult, FeatureResult)
        An ingest summary of the unchanged scan, and preprocess and feature results
        whose ``skipped`` field is :data:`NOTHING_TO_DO`.
    """
    return (
        start_summary(run_id, files, delta),
        PreprocessResult(group=plan.preprocess_group, skipped=NOTHING_TO_DO),
        FeatureResult(group=plan.features_group, skipped=NOTHING_TO_DO),
    )
