"""``hsnet deploy export|verify|inspect``: thin click layer over :mod:`deploy` (imported lazily)."""

from __future__ import annotations

import click

__all__ = ["deploy"]


@click.group("deploy")
def deploy() -> None:
    """Export models to ONNX, TFLite and CoreML with proven parity (under construction)."""
