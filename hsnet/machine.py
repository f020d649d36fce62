"""What a figure was measured on: the CPU's name, the cores this process may use, installed versions.

One place for the facts that training, deploy and benchmark outputs all print beside their numbers.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["cpu_model", "dist_version", "machine", "usable_cores"]


def dist_version(dist: str) -> str | None:
    """Installed version of a distribution without importing it (None if absent)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def machine() -> str:
    """One line naming the CPU, core count and OS, e.g. ``"Intel Xeon (2 cores), Linux x86_64, Python 3.11.7"``."""
    return (
        f"{cpu_model()} ({usable_cores()} cores), {platform.system()} {platform.machine()}, "
        f"Python {sys.version.split()[0]}"
    )
