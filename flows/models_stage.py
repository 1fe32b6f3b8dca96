"""The nightly flow's model stage: retrain when asked or when labels change, then score.

A new model becomes *current* only if its cross-validated AUC is not worse than the lower
bound of the current model's CV AUC confidence interval; every decision is recorded in
``models/<name>/current.json``.  Scoring uses the current model on the samples that have
features and no score yet.  Everything is decided from metadata first, so a night with
nothing new starts no cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows._runner import load_secret
from flows.score import ScoreParams, score_flow
from flows.train import TrainParams, train_flow
from medpipe.errors import ModelError
from medpipe.models import labels as lab
from medpipe.models import registry as reg
from medpipe.models.metrics import METRICS, format_metric
from medpipe.models.promotion import current_version, labels_changed, promote, unscored_count
from medpipe.report import png_bytes_uri

__all__ = ["train_and_score"]


def train_and_score(
    *,
    store: str,
    model: str,
    labels: str | None,
    retrain: bool,
    features_group: str,
    cluster: Callable[[], str],
    demo_secret: bool = False,
) -> dict[str, Any]:
    """Retrain if needed, then score new samples with the current model.

    ``cluster()`` returns the scheduler address, starting the cluster on first use.

    Returns
    -------
    dict
        ``name``, ``version`` (current), ``decision`` (if trained), ``scored``, ``metrics``
        (formatted CV metrics of the current model) and ``roc_uri`` (its CV ROC as a PNG
        data URI) for the report.
    """
    out: dict[str, Any] = {
        "name": model,
        "version": current_version(store, model),
        "decision": None,
        "scored": 0,
        "metrics": None,
        "roc_uri": None,
    }
    if labels:
        table = lab.read_labels(labels, secret=load_secret(allow_demo=demo_secret))
        labels_path = lab.write_labels(store, table)
        if retrain or labels_changed(store, model, out["version"], labels_path):
            trained = train_flow(
                TrainParams(
                    store=store,
                    model=model,
                    labels=labels,
                    features=features_group,
                    evaluate_split="val",
                    cluster=cluster(),
                    demo_secret=demo_secret,
                )
            )
            out["trained"] = {k: trained["train"][k] for k in ("version", "estimator", "cv_auc")}
            out["decision"] = promote(store, model, trained["train"])
            out["version"] = current_version(store, model)
    version = out["version"]
    if version is None:
        out["note"] = "no model registered yet (give --labels to train one)"
        return out
    try:
        meta = reg.read_model_json(store, model, version)
    except ModelError as err:
        out["note"] = str(err)
        return out
    if unscored_count(store, model, version, features_group):
        result = score_flow(
            ScoreParams(
                store=store, model=f"{model}:{version}", features=features_group, cluster=cluster()
            )
        )
        out["scored"] = result["scored"]
    cv = meta["metrics"]["cv"]
    out["metrics"] = {k: format_metric(k, cv[k]) for k in METRICS if k in cv}
    png = reg.read_model_file(store, model, version, "roc_cv.png")
    out["roc_uri"] = png_bytes_uri(png)
    return out
