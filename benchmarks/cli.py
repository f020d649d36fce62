"""``hsnet bench`` and ``hsnet bench compare``: thin click layer over :mod:`benchmarks` (imported lazily)."""

from __future__ import annotations

import click

__all__ = ["bench"]


@click.group("bench", invoke_without_command=True)
def bench() -> None:
    """Benchmark latency across models, runtimes and precisions (under construction)."""
