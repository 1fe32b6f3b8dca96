"""``medpipe sample``, ``train``, ``evaluate``, ``score`` and ``models``: labelled samples
and the model registry of a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medpipe.cli.common import (
    ClusterOpt,
    JsonOpt,
    ModelOpt,
    StoreArg,
    TsvOpt,
    console,
    fail,
    load_stage_config,
    print_listing,
    run_flow,
)

__all__ = ["sample_app", "models_app", "train", "evaluate", "score"]

sample_app = typer.Typer(help="Build sample archives.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry of a store.", no_args_is_help=True)


@sample_app.command("medmnist")
def sample_medmnist(
    name: Annotated[str, typer.Option(help="breastmnist or pneumoniamnist.")],
    out: Annotated[Path, typer.Option(help="Archive folder to write.")],
    npz: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Local MedMNIST .npz (default: download)."),
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Only these splits (repeatable): train, val, test.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most N images per split.")] = None,
) -> None:
    """Write a MedMNIST set as a DICOM archive (one secondary capture per image) + labels.csv."""
    from medpipe.errors import MedpipeError
    from medpipe.sample import build_medmnist_archive, download_medmnist

    try:
        if npz is None:
            npz = download_medmnist(name, root=out / ".download")
        archive = build_medmnist_archive(npz, out, name=name, splits=split or None, limit=limit)
    except MedpipeError as err:
        raise fail(err) from None
    import pandas as pd

    counts = pd.read_csv(archive / "labels.csv").groupby("split").size().to_dict()
    console.print(f"archive: {archive} ({counts}); labels: {archive / 'labels.csv'}")
    console.print(
        f"next: medpipe ingest {archive} STORE; medpipe features STORE --config "
        f"{archive / 'features.yaml'}; medpipe train STORE --labels {archive / 'labels.csv'} "
        f"--model {name}"
    )


def _feature_group(store: str, features: str | None, config: Path | None, source: str) -> str:
    from medpipe import store as st
    from medpipe.errors import ConfigError
    from medpipe.features import FeatureConfig
    from medpipe.features.dataset import features_group

    if features:
        return features
    if config is not None:
        return features_group(load_stage_config(FeatureConfig, config), source=source)
    tables = st.subgroups(store, "features")
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise fail(ConfigError(f"no feature table in {store}: run medpipe features"))
    raise fail(
        ConfigError(f"{store} has several feature tables {tables}: pass --features or --config")
    )


def train(
    store: StoreArg,
    labels: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Label CSV/Parquet.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    estimator: Annotated[
        str, typer.Option(help="svm | logreg | rf | cnn | all (each, and their soft vote)")
    ] = "all",
    features: Annotated[str | None, typer.Option(help="Feature table group.")] = None,
    config: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Feature config YAML.")
    ] = None,
    source: Annotated[str, typer.Option(help="images or preprocessed/<hash>")] = "images",
    folds: Annotated[int, typer.Option(help="Patient-grouped CV folds.")] = 5,
    outer_folds: Annotated[
        int, typer.Option(help="Nested-CV outer folds (0 = report the selection score).")
    ] = 3,
    evaluate_split: Annotated[
        str, typer.Option("--evaluate", help="Held-out split to evaluate afterwards ('' = none).")
    ] = "val",
    cluster: ClusterOpt = "local",
    demo_secret: Annotated[bool, typer.Option("--demo-secret")] = False,
) -> None:
    """Train on the 'train' rows (all rows without a split column) with grouped-CV selection."""
    from flows.train import TrainParams, train_flow
    from medpipe.errors import ConfigError
    from medpipe.models.estimators import get_estimator
    from medpipe.models.metrics import format_metric, metric_keys

    try:
        if estimator != "all":
            get_estimator(estimator)
    except ConfigError as err:
        raise fail(err) from None
    group = _feature_group(store, features, config, source)
    params = TrainParams(
        store=store, model=model, labels=str(labels), features=group, source=source,
        estimator=estimator, n_splits=folds, outer_folds=outer_folds,
        evaluate_split=evaluate_split or None,
        cluster=cluster, demo_secret=demo_secret,
    )
    res = run_flow(train_flow, params)
    console.print(
        f"model [bold]{res.name}:{res.version}[/] ({res.estimator}, "
        f"{res.n_train} training samples); CV AUC {res.cv_auc:.3f}; selection AUC by estimator: "
        + ", ".join(f"{k} {v:.3f}" for k, v in res.search.items())
    )
    console.print(
        f"nested cross-validation ({outer_folds} outer folds, patient-grouped, out-of-fold):"
        if outer_folds >= 2 else
        "cross-validation on the selection folds (patient-grouped; optimistic):"
    )
    for k in metric_keys(res.metrics):
        console.print("  " + format_metric(k, res.metrics[k]))
    ev = res.evaluation
    if ev:
        console.print(f"held-out {ev.split} (n={ev.n}):")
        for line in ev.lines:
            console.print("  " + line)


def evaluate(
    store: StoreArg,
    model: ModelOpt,
    split: Annotated[str, typer.Option(help="val | test")] = "val",
    labels: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Labels (default: those used to train)."),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="A second model (NAME[:VERSION]): compare the AUCs "
                     "(DeLong test and paired patient-level bootstrap)."),
    ] = None,
    demo_secret: Annotated[bool, typer.Option("--demo-secret")] = False,
) -> None:
    """Print a model's metrics with 95% CIs and calibration on a split and write the report.

    With --compare B, both models are evaluated and their AUC difference on the same
    samples is tested.
    """
    from medpipe.config import resolve_secret
    from medpipe.errors import MedpipeError
    from medpipe.models.evaluation import compare_models
    from medpipe.models.metrics import confusion_lines
    from medpipe.models.train import evaluate_model

    try:
        secret = resolve_secret(allow_demo=demo_secret) if labels is not None else None
        outs = [evaluate_model(store, model=m, split=split, labels=labels, secret=secret,
                               n_boot=n_boot) for m in [model, *([compare] if compare else [])]]
        cmp = (compare_models(store, model_a=model, model_b=compare, split=split, labels=labels,
                              secret=secret, n_boot=n_boot) if compare else None)
    except MedpipeError as err:
        raise fail(err) from None
    for out in outs:
        console.print(f"{out['model']} on {split} (n={out['n']}, {_class_counts(out)}, "
                      f"{out['n_patients']} patients; CIs resample patients)")
        for line in out["lines"]:
            typer.echo(line)
        for line in confusion_lines(out["confusion"]):
            typer.echo(line)
        roc = f"{store}/{out['roc']}" if out["roc"] else "not drawn (one class)"
        console.print(f"report: {store}/{out['report']}  ROC: {roc}  "
                      f"calibration: {store}/{out['reliability']}")
    if cmp is not None:
        console.print(f"comparison on the {cmp['n']} samples both score "
                      f"({cmp['n_positive']} positive, {cmp['n_patients']} patients):")
        for line in cmp["lines"]:
            typer.echo("  " + line)
        console.print(f"report: {store}/{cmp['report']}")


def score(
    store: StoreArg,
    model: ModelOpt,
    features: Annotated[str | None, typer.Option(help="Feature table (default: model's).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N unscored samples.")] = None,
    cluster: ClusterOpt = "local",
) -> None:
    """Score every sample that has features and no score yet for that model version."""
    from flows.score import ScoreParams, score_flow

    params = ScoreParams(store=store, model=model, features=features, limit=limit, cluster=cluster)
    out = run_flow(score_flow, params)
    console.print(f"scored {out.scored} new samples; {out.total} in {store}/{out.group}")


def _class_counts(out: dict) -> str:
    """``12 positive``, or ``CT 12, MR 12, PT 12`` for k classes."""
    if "n_per_class" in out and "n_positive" not in out:
        return ", ".join(f"{k} {v}" for k, v in out["n_per_class"].items())
    return f"{out['n_positive']} positive"


@models_app.command("list")
def models_list(store: StoreArg, as_json: JsonOpt = False, as_tsv: TsvOpt = False) -> None:
    """List the registered models with their estimator and metrics."""
    from medpipe.models.registry import list_models

    rows = []
    for m in list_models(store):
        auc = m.get("metrics", {}).get("cv", {}).get("auc", {})
        rows.append(
            [
                f"{m['name']}:{m['version']}",
                m.get("estimator", ""),
                m.get("created_at", ""),
                str(m.get("labels", {}).get("n_train", "")),
                f"{auc.get('value', float('nan')):.3f}" if auc else "",
                m.get("features_group", ""),
            ]
        )
    cols = ["model", "estimator", "created", "n train", "CV AUC", "features"]
    print_listing(f"{store}: models", cols, rows, as_json, as_tsv)


@models_app.command("show")
def models_show(
    store: StoreArg,
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    as_json: Annotated[bool, typer.Option("--json", help="Print model.json.")] = False,
) -> None:
    """Show a model's model.json summary (metrics with CIs, configs, versions)."""
    from medpipe.errors import MedpipeError
    from medpipe.models.metrics import confusion_lines, format_metric, metric_keys
    from medpipe.models.registry import parse_model_ref, read_model_json

    try:
        meta = read_model_json(store, *parse_model_ref(model))
    except MedpipeError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    c = console
    c.print(
        f"[bold]{meta['name']}:{meta['version']}[/]  {meta['estimator']} "
        f"{meta.get('best_params')}  created {meta['created_at']}"
    )
    c.print(
        f"features: {meta['features_group']} (config {meta['feature_config_hash']}, "
        f"{len(meta['feature_names'])} features, source {meta['source']})"
    )
    lb = meta["labels"]
    c.print(
        f"labels: {lb['source']} -> {lb['path']} (by {lb['key']}; {lb['n_train']} train, "
        f"{_class_counts(lb)}, {lb['n_patients']} patients)"
    )
    c.print(f"catalog snapshot: {meta['catalog_hash']}")
    if len(meta.get("classes", [0, 1])) > 2:
        c.print(f"classes: {', '.join(map(str, meta['classes']))} (decision: argmax)")
    for split, metrics in meta.get("metrics", {}).items():
        c.print(f"{split}:")
        for k in metric_keys(metrics):
            c.print("  " + format_metric(k, metrics[k]))
        if "matrix" in meta.get("confusion", {}).get(split, {}):
            for line in confusion_lines(meta["confusion"][split]):
                c.print("  " + line, markup=False)
    c.print("libraries: " + ", ".join(f"{k} {v}" for k, v in meta["libraries"].items()))
