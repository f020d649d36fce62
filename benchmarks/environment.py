"""What a benchmark ran on: CPU, cores, governor, load, software versions; recorded beside every result."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
from typing import Any

from hsnet.toolbox.machine import cpu_flags, cpu_model, dist_version, governor, max_mhz

__all__ = ["RUNTIME_DISTRIBUTIONS", "collect_environment", "machine_line"]


def _distributions() -> tuple[str, ...]:
    from deploy.targets import distributions

    return (*distributions(), "hsnet")


#: Distributions whose versions change what is measured: every tool that makes or runs an artifact (deploy's target
#: registry says which), and hsnet itself.
RUNTIME_DISTRIBUTIONS = _distributions()


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
        "cpu_flags": cpu_flags(),
        "governor": governor(),
        "max_mhz": max_mhz(),
        "loadavg": load,
        "host": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        "python": platform.python_version(),
        "versions": {d: dist_version(d) for d in RUNTIME_DISTRIBUTIONS},
    }


def machine_line(env: dict[str, Any]) -> str:
    """One line naming the machine of a result, for table footers and plot titles."""
    cores = env.get("usable_cores") or env.get("logical_cores")
    load = env.get("loadavg")
    load_txt = f", load {load[0]:.1f}" if load else ""
    return f"{env.get('cpu', '?')} ({env.get('machine', '?')}, {cores} cores{load_txt}), {env.get('os', '?')}"
