"""The nightly flow's model stage: retrain when asked or when labels change, then score.

Filled in with the model registry (flows/train.py, flows/score.py); until a model is
registered the stage reports that there is nothing to score with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["train_and_score"]


def train_and_score(
    *,
    store: str,
    model: str,
    labels: str | None,
    retrain: bool,
    features_group: str,
    cluster: Callable[[], str],
) -> dict[str, Any]:
    """Retrain if needed, then score new samples with the current model.

    ``cluster()`` returns the scheduler address, starting the cluster on first use.
    """
    return {
        "name": model,
        "version": None,
        "metrics": None,
        "scored": 0,
        "note": "no model registered",
    }
