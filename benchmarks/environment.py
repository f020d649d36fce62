"""What a benchmark ran on: CPU, cores, governor, load, software versions; recorded beside every result."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
from pathlib import Path
from typing import Any

from hsnet.machine import cpu_model, dist_version

__all__ = ["RUNTIME_DISTRIBUTIONS", "collect_environment", "cpu_model", "dist_version", "machine_line"]

# Distributions whose versions change what is measured (runtimes and the converters that make artifacts).
RUNTIME_DISTRIBUTIONS = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxsim",
    "onnx2tf",
    "tensorflow",
    "ai-edge-litert",
    "tflite-runtime",
    "coremltools",
    "hsnet",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "neon", "asimd")))
    except OSError:
        pass
    return []


def collect_environment() -> dict[str, Any]:
    """The environment block of a result.

    The host name is recorded only as a short hash: enough to tell two machines apart, nothing to leak.
    ``loadavg`` is the 1/5/15-minute load at collection time: a loaded machine explains a noisy table.
    """
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    load = None
    if hasattr(os, "getloadavg"):
        with contextlib.suppress(OSError):
            load = [round(v, 2) for v in os.getloadavg()]
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "logical_cores": os.cpu_count(),
        "usable_cores": None if affinity is None else len(affinity),
        "cpu_flags": _cpu_flags(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unreadable",
        "max_mhz": _mhz(_read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")),
        "loadavg": load,
        "host": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        "python": platform.python_version(),
        "versions": {d: dist_version(d) for d in RUNTIME_DISTRIBUTIONS},
    }


def _mhz(khz: str | None) -> float | None:
    try:
        return None if khz is None else int(khz) / 1000
    except ValueError:
        return None


def machine_line(env: dict[str, Any]) -> str:
    """One line naming the machine of a result, for table footers and plot titles."""
    cores = env.get("usable_cores") or env.get("logical_cores")
    load = env.get("loadavg")
    load_txt = f", load {load[0]:.1f}" if load else ""
    return f"{env.get('cpu', '?')} ({env.get('machine', '?')}, {cores} cores{load_txt}), {env.get('os', '?')}"
