"""Typed benchmark errors; each is an :class:`hsnet.HSNetError`, printed by ``hsnet bench`` as one line (exit 2)."""

from __future__ import annotations

from hsnet.errors import HSNetError

__all__ = ["BaselineError", "BenchError"]


class BenchError(HSNetError):
    """A benchmark cannot be run as asked: unknown model, runtime, precision or device, bad option value."""


class BaselineError(BenchError):
    """A result or baseline file is unreadable, of another schema version, or not comparable with this run."""
