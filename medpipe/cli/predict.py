"""``medpipe predict``: a trained model applied to one new study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medpipe.cli.common import DemoSecretOpt, console, fail

__all__ = ["predict"]


def predict(
    path: Annotated[
        Path, typer.Argument(exists=True, help="A DICOM folder, a DICOM file or a NIfTI file.")
    ],
    model: Annotated[
        str, typer.Option("--model", help="NAME or NAME:VERSION (default the latest version).")
    ],
    model_store: Annotated[
        str, typer.Option("--model-store", help="The store whose registry holds the model.")
    ],
    store: Annotated[
        str | None,
        typer.Option("--store", help="Keep the working store (de-identified images, "
                     "features) here; default a temporary store, deleted afterwards."),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Contributing features to show.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the same as one JSON document, for scripts.")
    ] = False,
    demo_secret: DemoSecretOpt = False,
) -> None:
    """Predict PATH with a trained model: its probability, the predicted label at the
    model's recorded threshold and the top contributing features.

    PATH is de-identified, read, preprocessed and turned into features with the model's
    own recorded configs, in a temporary store (or --store).  A series whose modality or
    geometry (2D/3D, channels, size range) the model was not trained on is refused with
    the reason.  Contributions: linear models (logreg, svm) give coefficient x
    standardised value (log-odds for logreg, the margin for the SVM); random forests the
    per-sample tree-path attribution (Saabas: each split's change of the positive-class
    fraction credited to its feature, averaged over the trees; bias + contributions = the
    probability).  The soft vote has none.  Without MEDPIPE_SECRET a temporary store
    uses a random one-off secret (series keys then match nothing); --store needs it.
    """
    from medpipe.config import env_defaults, resolve_secret
    from medpipe.errors import MedpipeError
    from medpipe.predict import predict as run_predict

    try:
        secret = None
        if store is not None or demo_secret or env_defaults().secret_set:
            secret = resolve_secret(allow_demo=demo_secret)
        result = run_predict(path, model=model, model_store=model_store, store=store,
                             secret=secret)
    except MedpipeError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(top=top), indent=2))
        return
    _print(result.to_dict(top=top))


def _print(out: dict[str, Any]) -> None:
    """The human-readable result."""
    c = console
    c.print(f"model [bold]{out['model']}[/] ({out['estimator']}), decision threshold "
            f"{out['threshold']:.4g}")
    for p in out["predictions"]:
        what = p["series"] + (f" ROI {p['roi']}" if p["roi"] else "")
        if p["probability"] is None:
            c.print(f"{what} ({p['modality']}): no probability (a feature the model "
                    "needs is missing)", soft_wrap=True)
            continue
        c.print(f"{what} ({p['modality']}): probability [bold]{p['probability']:.4f}[/], "
                f"predicted label [bold]{p['predicted']}[/]", soft_wrap=True)
        contrib = p["contributions"]
        if not contrib["method"]:
            c.print(f"  no contributions: {contrib['note']}")
            continue
        table = Table(title=f"top contributions: {contrib['method']} ({contrib['units']}; "
                      f"bias {contrib['bias']:.4g})")
        for col in ("feature", "value", "standardised", "contribution"):
            table.add_column(col, overflow="fold", justify="left" if col == "feature"
                             else "right")
        for t in contrib["top"]:
            table.add_row(t["feature"], f"{t['value']:.4g}", f"{t['standardised']:.3f}",
                          f"{t['contribution']:+.4f}")
        c.print(table)
    for r in out["refused"]:
        c.print(f"[yellow]refused[/] series {r['series']}: {r['reason']}", soft_wrap=True)
    for r in out["unread"]:
        c.print(f"[yellow]not read[/] {r['file']}: {r['reason']}", soft_wrap=True)
    c.print(f"working store: {out['store']}" if out["store"] else
            "working store: temporary (deleted); --store keeps it")
