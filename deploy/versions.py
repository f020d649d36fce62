"""Versions of the tools an export used, and the machine it ran on, for manifests and printed figures."""

from __future__ import annotations

import platform

from hsnet.machine import dist_version, machine

__all__ = ["CORE_TOOLS", "machine", "package_version", "tool_versions"]

#: Distributions every export records (the ONNX stage uses all of them).
CORE_TOOLS = ("torch", "numpy", "onnx", "onnxruntime", "onnxsim")


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"not installed"`` (never imports it)."""
    return dist_version(dist) or "not installed"


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"python": ..., "hsnet": ..., <dist>: version}`` for :data:`CORE_TOOLS` plus ``extra``."""
    from hsnet import __version__

    versions = {"python": platform.python_version(), "hsnet": __version__}
    for dist in (*CORE_TOOLS, *extra):
        versions[dist] = package_version(dist)
    return versions
