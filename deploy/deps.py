"""Lazy imports of optional dependencies: a missing one raises an error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from deploy.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``hsnet[extra]``.

    Nothing is ever installed at run time.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(module, extra, purpose) from None
