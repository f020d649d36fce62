"""Typed deployment errors; each is an :class:`hsnet.HSNetError`, printed by the CLI as one line (exit 2;
:class:`ParityError` is a failed check, exit 1)."""

from __future__ import annotations

from hsnet.errors import CheckFailed, HSNetError

__all__ = ["DeployError", "MissingDependencyError", "ParityError", "UnsupportedOperationError"]


class DeployError(HSNetError):
    """A deployment step cannot be done with the given input (bad file, bad option, failed stage)."""


class MissingDependencyError(DeployError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python module {module!r}, which is not installed; "
            f"install it with: pip install 'hsnet[{extra}]'"
        )
        self.module = module
        self.extra = extra


class ParityError(DeployError, CheckFailed):
    """An artifact does not compute what the PyTorch model computes, within the documented tolerance."""


class UnsupportedOperationError(DeployError):
    """A graph holds an operation that a target or evaluator does not support (named in the message)."""
