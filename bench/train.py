"""Benchmark: ``train --estimator all`` end to end vs the same selection in scikit-learn.

Run ``.venv/bin/python bench/train.py`` after ``make demo`` (``--help`` for options).
The data are the demo store's feature table and labels (``--store``, default
``demo-output/store.zarr``), copied once to a temporary folder so the benchmark's models
are not registered in it.

* **medpipe**: :func:`medpipe.models.train.train_model` — the function the ``train``
  command (its flow) calls — with ``estimator="all"``, 5 selection folds and 3 outer
  folds, as a client of medpipe's local cluster of 2 workers (``local:2``, started before
  the clock starts).  End to end: reading the table, the selection and nested CV (two
  batches of fold fits, :mod:`medpipe.models.batch`), the refit, the bootstrap CIs, the
  plots and the registration.
* **scikit-learn**, in this process, ``n_jobs=1``, on the same matrix
  (:func:`medpipe.models.train.training_matrix`) and the same patient-grouped folds:
  :class:`sklearn.model_selection.GridSearchCV` of every kind over its grid, the soft
  vote of the tuned kinds fitted on each fold, the best mean fold AUC wins, its refit on
  all rows (and its out-of-fold probabilities when it is not the vote), and the same
  selection repeated in each of the 3 outer folds with the winner refitted on the outer
  train rows and scored on the outer test rows (the nested-CV estimate).

The two sides run alternately ``--repeat`` times (default 3); it prints every time, both
sides' nested-CV AUC (they must agree), the medians and their ratio (target >= 1.7x on
2 cores).  ``--quick`` checks that the script runs: the first 120 training rows, 3
folds, 2 outer folds, one repetition (not a figure).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _select(kinds, x, y, folds):  # noqa: ANN001, ANN202 - benchmark helper
    """scikit-learn's selection: each kind's GridSearchCV, the vote refitted per fold."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from medpipe.models import estimators as est
    from medpipe.models.probability import auc_scorer, proba_block

    best = []
    for k in kinds:
        gs = GridSearchCV(est.make_pipeline(k), est.param_grid(k), cv=folds,
                          scoring=auc_scorer, n_jobs=1, refit=False).fit(x, y)
        i = int(np.nanargmax(gs.cv_results_["mean_test_score"]))
        best.append((float(gs.cv_results_["mean_test_score"][i]),
                     est.make_pipeline(k).set_params(**gs.cv_results_["params"][i])))
    vote = est.SoftVote([(k, p) for k, (_, p) in zip(kinds, best, strict=True)])
    scores = [auc_scorer(clone(vote).fit(x[tr], y[tr]), x[te], y[te]) for tr, te in folds]
    best.append((float(np.mean(scores)), vote))
    winner = max(best, key=lambda b: b[0])[1]
    oof = np.full(len(y), np.nan)
    if winner is not vote:  # train needs the winner's out-of-fold probabilities
        for tr, te in folds:
            oof[te] = proba_block(clone(winner).fit(x[tr], y[tr]), x[te])
    return winner


def _sklearn_train(kinds, x, y, groups, n_splits, outer_folds):  # noqa: ANN001, ANN202
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    from medpipe.models import estimators as est

    folds = est.grouped_folds(y, groups, n_splits=n_splits)
    from medpipe.models.probability import proba_block

    winner = _select(kinds, x, y, folds)
    clone(winner).fit(x, y)
    aucs = []
    for tr, te in est.grouped_folds(y, groups, n_splits=outer_folds):
        inner = [(tr[a], tr[b]) for a, b in est.grouped_folds(y[tr], groups[tr],
                                                               n_splits=n_splits)]
        w = _select(kinds, x, y, inner)
        aucs.append(roc_auc_score(y[te], proba_block(clone(w).fit(x[tr], y[tr]), x[te])))
    return float(np.mean(aucs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="demo-output/store.zarr",
                    help="a store with a feature table and recorded labels (make demo's)")
    ap.add_argument("--features", default=None, help="feature table (default: the only one)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--quick", action="store_true", help="tiny run: checks the script runs")
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster

    from medpipe import store as st
    from medpipe.cluster import local_cluster_kwargs
    from medpipe.models import estimators as est
    from medpipe.models import labels as lab
    from medpipe.models.train import train_model, training_matrix

    src = Path(args.store)
    if not (src / "features").is_dir() or not (src / "labels").is_dir():
        sys.exit(f"{src}: no feature table or labels; run `make demo` first (or pass --store)")
    n_splits, outer, repeat = (3, 2, 1) if args.quick else (5, 3, args.repeat)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        store = str(Path(tmp) / "store.zarr")
        shutil.copytree(src, store)
        features = args.features or st.subgroups(store, "features")[0]
        label_files = sorted((Path(store) / "labels").glob("*.parquet"))
        labels = lab.read_stored_labels(store, f"labels/{label_files[-1].name}")
        if args.quick:  # the first 120 training rows
            labels = labels[labels["split"] == "train"].head(120)
        x, y, groups, names = training_matrix(store, features, labels)
        kinds = [k for k in est.estimator_names() if k != "cnn"]
        grids = {k: est.param_grid(k) for k in kinds}
        print(f"data: {store} ({features}): {x.shape[0]} training rows x {x.shape[1]} "
              f"features; kinds {kinds}; grids {grids}; {n_splits} folds, {outer} outer")
        t_sk: list[float] = []
        t_mp: list[float] = []
        # the client is current only around train: dask-ml's logistic regression scatters
        # to the current client, which the scikit-learn side must not see
        with LocalCluster(**local_cluster_kwargs(2)) as cluster, \
                Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2)
            for i in range(repeat):
                t = time.perf_counter()
                # in this process only: dask-ml's logistic regression runs its solver's
                # dask computations on the synchronous scheduler, not on the cluster
                with est.pipeline_features(names), dask.config.set(scheduler="sync"):
                    sk_auc = _sklearn_train(kinds, x, y, groups, n_splits, outer)
                t_sk.append(time.perf_counter() - t)
                t = time.perf_counter()
                with client.as_current():
                    out = train_model(store, name="bench", features=features, labels=labels,
                                      estimator="all", n_splits=n_splits, outer_folds=outer)
                t_mp.append(time.perf_counter() - t)
                print(f"run {i + 1}: scikit-learn n_jobs=1 {t_sk[-1]:.1f} s (nested AUC "
                      f"{sk_auc:.3f}), medpipe train 2 workers {t_mp[-1]:.1f} s (nested AUC "
                      f"{out['cv_auc']:.3f}, {out['estimator']}), ratio "
                      f"{t_sk[-1] / t_mp[-1]:.2f}x", flush=True)
    med_sk, med_mp = float(np.median(t_sk)), float(np.median(t_mp))
    print(f"median scikit-learn selection + nested CV, n_jobs=1: {med_sk:.1f} s")
    print(f"median medpipe train --estimator all, 2 workers:    {med_mp:.1f} s")
    try:
        import os

        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    except OSError:  # pragma: no cover
        pass
    print(f"speed-up (median / median, {repeat} runs each): {med_sk / med_mp:.2f}x "
          "(target >= 1.7x)")


if __name__ == "__main__":
    main()
