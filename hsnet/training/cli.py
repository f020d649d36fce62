"""``hsnet train`` and ``hsnet eval``: thin click layers over :mod:`hsnet.training` (imported lazily)."""

from __future__ import annotations

import click

from hsnet.clitools import user_errors

__all__ = ["eval_cmd", "train_cmd"]


@click.command("train")
@user_errors
def train_cmd() -> None:
    """Train a model (under construction)."""
    raise click.ClickException("hsnet train is not built yet")


@click.command("eval")
@user_errors
def eval_cmd() -> None:
    """Evaluate a checkpoint (under construction)."""
    raise click.ClickException("hsnet eval is not built yet")
