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

__all__ = [
    "cpu_flags",
    "cpu_model",
    "dist_version",
    "governor",
    "machine",
    "max_mhz",
    "package_version",
    "usable_cores",
    "versions",
]


def dist_version(dist: str) -> str | None:
    """Installed version of a distribution without importing it (None if absent)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist``, or ``"not installed"`` (never imports it)."""
    return dist_version(dist) or "not installed"


def versions(dists: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{"python": ..., "hsnet": ..., <dist>: version}`` for ``dists`` (``"not installed"`` where absent)."""
    return {"python": platform.python_version(), "hsnet": package_version("hsnet"),
            **{d: package_version(d) for d in dists}}  # fmt: skip


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_flags() -> list[str]:
    """The vector and matrix ISA flags of the CPU (AVX*, AMX, FMA, SSE4, NEON/ASIMD...), sorted."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "neon", "asimd")))
    except OSError:
        pass
    return []


def governor() -> str:
    """cpufreq governor of CPU 0, or ``"unreadable"`` (virtual machines often have none)."""
    return _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unreadable"


def max_mhz() -> float | None:
    """Maximum frequency of CPU 0 in MHz, where the kernel tells."""
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return None if khz is None else int(khz) / 1000
    except ValueError:
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


#: The CPU families artifacts are built for (``--arch``).
ARCHES = ("x86_64", "aarch64")


def arch_name(machine: str) -> str:
    """A CPU family as ``platform.machine()`` (or ``uname -m``) says it, spelled as in :data:`ARCHES` where it is
    one of them."""
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def host_arch() -> str:
    """This machine's CPU family (:func:`arch_name`)."""
    return arch_name(platform.machine())


@cache
def machine() -> str:
    """One line naming the CPU, core count and OS, e.g. ``"Intel Xeon (2 cores), Linux x86_64, Python 3.11.7"``."""
    return (
        f"{cpu_model()} ({usable_cores()} cores), {platform.system()} {platform.machine()}, "
        f"Python {sys.version.split()[0]}"
    )
