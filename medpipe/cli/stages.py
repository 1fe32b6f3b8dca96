"""``medpipe preprocess`` and ``features``: the store's derived groups."""

from __future__ import annotations

from typing import Annotated

import typer

from medpipe.cli.common import (
    ClusterOpt,
    ConfigOpt,
    StoreArg,
    console,
    load_stage_config,
    run_flow,
)

__all__ = ["preprocess", "features"]


def preprocess(
    store: StoreArg,
    config: ConfigOpt = None,
    cluster: ClusterOpt = "local",
    limit: Annotated[int | None, typer.Option(help="Only the first N series (dev run).")] = None,
) -> None:
    """Preprocess STORE's images into preprocessed/<config-hash>/ (pending series only)."""
    from flows.preprocess import PreprocessParams, preprocess_flow
    from medpipe.preprocess import PreprocessConfig

    cfg = load_stage_config(PreprocessConfig, config)
    params = PreprocessParams(store=store, config=cfg, cluster=cluster, limit=limit)
    result = run_flow(preprocess_flow, params)
    console.print(
        f"preprocessed {result.done} series ({len(result.unsupported)} skipped) "
        f"into {store}/{result.group}"
    )


def features(
    store: StoreArg,
    config: ConfigOpt = None,
    source: Annotated[str, typer.Option(help="images or preprocessed/<hash>")] = "images",
    cluster: ClusterOpt = "local",
) -> None:
    """Extract features of STORE's series into features/<config-hash> (xarray Dataset)."""
    from flows.features import FeatureParams, features_flow
    from medpipe.features import FeatureConfig

    cfg = load_stage_config(FeatureConfig, config)
    params = FeatureParams(store=store, config=cfg, source=source, cluster=cluster)
    result = run_flow(features_flow, params)
    console.print(
        f"feature table: {store}/{result.group}\n"
        f"  xarray.open_zarr('{store}/{result.group}', consolidated=False)"
    )
