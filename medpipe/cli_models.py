"""``medpipe`` commands for labelled samples and models (sample, train, evaluate, score)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``medpipe`` app."""
