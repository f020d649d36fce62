"""Versions of the tools an export used, and the machine it ran on, for manifests and printed figures."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from functools import cache

__all__ = ["CORE_TOOLS", "machine", "package_version", "tool_versions"]

#: Distributions every export records (the ONNX stage uses all of them).
CORE_TOOLS = ("torch", "numpy", "onnx", "onnxruntime", "onnxsim")


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"not installed"`` (never imports it)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"python": ..., "hsnet": ..., <dist>: version}`` for :data:`CORE_TOOLS` plus ``extra``."""
    from hsnet import __version__

    versions = {"python": platform.python_version(), "hsnet": __version__}
    for dist in (*CORE_TOOLS, *extra):
        versions[dist] = package_version(dist)
    return versions


@cache
def machine() -> str:
    """One line naming the CPU, core count and OS, e.g. ``"Intel Xeon (2 cores), Linux x86_64"``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu} ({cores} cores), {platform.system()} {platform.machine()}, Python {sys.version.split()[0]}"
