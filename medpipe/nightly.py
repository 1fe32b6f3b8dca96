"""What a nightly run has to do, decided from metadata alone (no Prefect).

The nightly flow gathers a few facts before starting anything (the archive's diff
against the catalog, the series pending preprocessing, the series whose features are
stale): :func:`survey` reads them, writing nothing, and :func:`plan_nightly` turns them
into a :class:`NightlyPlan`.  A stage runs when it has work now or when an earlier stage
of the same run will give it work: ingested images may need preprocessing, new
preprocessed images new features.  A night with nothing new runs no stage and starts
no cluster.

:func:`skipped_results` gives the results of the stages the plan leaves out, so the
flow never assembles another stage's result by hand.  :func:`idle_result` is the whole
run's result when nothing at all is to do (no stage, no training, nothing to score): the
command line returns it without starting Prefect or a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medpipe import catalog
from medpipe.catalog import Diff, FileStat
from medpipe.features import FeatureConfig
from medpipe.ingest import IngestSummary, start_summary
from medpipe.preprocess import PreprocessConfig
from medpipe.results import FeatureResult, NightlyResult, PreprocessResult

__all__ = [
    "NightlyPlan",
    "plan_nightly",
    "survey",
    "skipped_results",
    "idle_result",
    "NIGHTLY_FEATURES",
    "NIGHTLY_MODEL",
    "NOTHING_TO_DO",
    "COMPACT_AFTER",
]

#: The registered model name a nightly run trains and scores with, unless told.
NIGHTLY_MODEL = "nightly"
#: Feature families of the nightly run: intensity, texture, and the appearance families
#: (resampled pixels, HOG) that carry most of the signal on small 2D images.
NIGHTLY_FEATURES = FeatureConfig(
    families=("firstorder", "histogram", "glcm", "texture", "pixels", "hog")
)

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


def survey(
    store: str, archive: str, *, preprocess: PreprocessConfig, features: FeatureConfig
) -> tuple[list[FileStat], Diff, NightlyPlan]:
    """Scan the archive and plan the night, reading the store and writing nothing.

    Parameters
    ----------
    store, archive
        The store and the archive (see :func:`medpipe.catalog.scan`).
    preprocess, features
        The run's configs.

    Returns
    -------
    tuple of (list of FileStat, Diff, NightlyPlan)
        The archive's listing (ingest reads it), its diff against the catalog, and the
        plan.
    """
    from medpipe.features.dataset import features_group, stale_series
    from medpipe.preprocess.apply import pending_series, preprocessed_group

    files = catalog.scan(archive)
    delta = catalog.diff(files, catalog.current(store))
    pgroup = preprocessed_group(preprocess)
    plan = plan_nightly(
        delta=delta,
        pending_preprocess=pending_series(store, config=preprocess),
        stale_features=stale_series(store, config=features, source=pgroup),
        preprocess_group=pgroup,
        features_group=features_group(features, source=pgroup),
    )
    return files, delta, plan


def idle_result(
    store: str,
    archive: str,
    *,
    model: str,
    labels: str | Path | None,
    secret: Callable[[], bytes],
    preprocess: PreprocessConfig | None = None,
    features: FeatureConfig | None = None,
) -> NightlyResult | None:
    """The nightly run's result if it has nothing at all to do, else ``None``.

    Nothing to do: no data stage runs (:func:`plan_nightly`), the labels are the ones
    the current version of ``model`` was trained on, and that version has scored every
    sample.  Nothing is written: the labels are pseudonymised in memory only.

    Parameters
    ----------
    store, archive
        The store and the archive.
    model
        The registered model name.
    labels
        The run's label file, or ``None``.
    secret
        Returns the pseudonymisation secret (called only when there are labels).
    preprocess, features
        The run's configs (default the nightly ones).

    Returns
    -------
    NightlyResult or None
        The result a run of the nightly flow would return (no stage times, no report),
        or ``None`` when the run has work.
    """
    from medpipe.models import lifecycle

    pcfg = preprocess or PreprocessConfig.default()
    files, delta, plan = survey(
        store, archive, preprocess=pcfg, features=features or NIGHTLY_FEATURES
    )
    if plan.any_work:
        return None
    path = lifecycle.labels_path(labels, secret=secret)
    if lifecycle.needs_training(store, model, path):
        return None
    scoring = lifecycle.plan_scoring(store, model, plan.features_group)
    if scoring.run:
        return None
    run_id = catalog.new_run_id()
    ingested, preprocessed, featured = skipped_results(
        plan, run_id=run_id, files=files, delta=delta
    )
    return NightlyResult(
        run_id=run_id,
        ingest=ingested,
        preprocess=preprocessed,
        features=featured,
        model=lifecycle.model_stage_result(store, scoring, trained=None, decision=None, scored=0),
        stages={},
        report=None,
    )
