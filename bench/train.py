"""Benchmark: the same grid search on a 2-worker Dask cluster vs scikit-learn n_jobs=1.

Run ``.venv/bin/python bench/train.py`` (``--help`` for options).  The data are the
BreastMNIST training images (raw 28x28 pixels, ``<data>/labeled/breastmnist_trainval.npz``)
when the shared data are present, else a synthetic problem of the same shape.

Both sides run the identical search: medpipe's random-forest pipeline
(``VarianceThreshold → dask-ml StandardScaler → RandomForestClassifier``) over
:func:`medpipe.models.estimators.param_grid` ``("rf")``, on the same patient-grouped
folds and with the same AUC scorer.

* **dask-ml**: :class:`dask_ml.model_selection.GridSearchCV` on medpipe's local cluster
  with 2 workers (``--cluster local:2``: single-threaded worker processes, see
  :func:`medpipe.cluster.local_cluster_kwargs`; started before the clock starts).
* **scikit-learn**: :class:`sklearn.model_selection.GridSearchCV` with ``n_jobs=1``.

The two sides run alternately ``--repeat`` times (default 3) on the same cluster, so
both see the same machine noise; it checks that both found the same fold scores, and
prints every time, the median of each side and the ratio of the medians (target >= 1.7x
on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _data(root: Path, n: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    npz = root / "labeled" / "breastmnist_trainval.npz"
    if npz.is_file():
        d = np.load(npz)
        x = d["train_images"].reshape(len(d["train_images"]), -1).astype(float)
        y = d["train_labels"].ravel().astype(int)
        what = f"BreastMNIST train pixels {x.shape}"
    else:
        from sklearn.datasets import make_classification

        x, y = make_classification(n_samples=546, n_features=784, n_informative=40,
                                   random_state=0)
        what = f"synthetic {x.shape} (shared data not found at {root})"
    if n:
        x, y = x[:n], y[:n]
    return x, y, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--n", type=int, default=None, help="only the first N samples")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    args = ap.parse_args()

    from distributed import Client, LocalCluster
    from sklearn.model_selection import GridSearchCV as SkGridSearchCV

    from medpipe.cluster import local_cluster_kwargs
    from medpipe.models import estimators as est

    x, y, what = _data(args.data, args.n)
    groups = np.arange(len(y))  # MedMNIST: one patient per image
    folds = est.grouped_folds(y, groups, n_splits=args.folds)
    grid = est.param_grid("rf")
    n_fits = args.folds * int(np.prod([len(v) for v in grid.values()]))
    print(f"data: {what}; grid {grid}; {n_fits} fits")

    def run_sklearn() -> SkGridSearchCV:
        return SkGridSearchCV(est.make_pipeline("rf"), grid, cv=folds,
                              scoring=est.auc_scorer, n_jobs=1, refit=False).fit(x, y)

    t_sk: list[float] = []
    t_dask: list[float] = []
    with LocalCluster(**local_cluster_kwargs(2)) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        for i in range(args.repeat):
            t = time.perf_counter()
            sk = run_sklearn()  # in this process; the cluster idles meanwhile
            t_sk.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = est.search("rf", x, y, groups, folds=folds)
            t_dask.append(time.perf_counter() - t)
            print(f"run {i + 1}: scikit-learn n_jobs=1 {t_sk[-1]:.1f} s, "
                  f"dask-ml 2 workers {t_dask[-1]:.1f} s, ratio {t_sk[-1] / t_dask[-1]:.2f}x",
                  flush=True)

    ref = dict(zip(map(str, sk.cv_results_["params"]), sk.cv_results_["mean_test_score"],
                   strict=True))
    delta = max(abs(ref[str(c["params"])] - c["mean_auc"]) for c in res.candidates)
    print(f"max |mean AUC difference| between the two: {delta:.2g}; "
          f"best {res.best_params} AUC {res.best_score:.3f}")
    med_sk, med_dask = float(np.median(t_sk)), float(np.median(t_dask))
    print(f"median scikit-learn GridSearchCV n_jobs=1: {med_sk:.1f} s")
    print(f"median dask-ml GridSearchCV, 2 workers:    {med_dask:.1f} s")
    try:
        import os

        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    except OSError:  # pragma: no cover
        pass
    print(f"speed-up (median / median, {args.repeat} runs each): {med_sk / med_dask:.2f}x "
          "(target >= 1.7x)")


if __name__ == "__main__":
    main()
