"""One artifact's worker on a device: what ``hsnet bench --remote`` and ``hsnet deploy verify --remote`` share.

:class:`DeviceLauncher` starts a worker job on a device (the pushed runner, the pushed artifact in place of the
local path, ``watch_stdin`` so that the worker dies with its connection); :func:`open_worker` probes the device,
checks that it has the runtime, pushes the runner and the artifact and starts the worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnet.devices.handle import RUNNER_PATH, WorkerFailed, WorkerProcess, WorkerSkipped
from hsnet.devices.push import push
from hsnet.devices.remote import Device, probe
from hsnet.errors import ToolFailure
from hsnet.toolbox.progress import log as _log

__all__ = ["DEVICE_RUNTIMES", "DeviceLauncher", "device_text", "missing_runtime", "open_worker", "ready_device"]

#: Runtimes a device runs, and the distributions that provide them there.
DEVICE_RUNTIMES = {"onnxruntime": ("onnxruntime",), "tflite": ("ai-edge-litert", "tflite-runtime")}


@dataclass
class DeviceLauncher:
    """Starts a worker job on ``device``: its artifact replaced by the pushed copy, ``env`` set there."""

    device: Device
    runner: str
    artifacts: Mapping[str, str]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, job: Mapping[str, Any]) -> list[str]:
        job = {**job, "watch_stdin": True}  # the worker exits when the connection drops
        if job.get("artifact") in self.artifacts:
            job["artifact"] = self.artifacts[job["artifact"]]
        words = ["python3", self.runner, json.dumps(job, separators=(",", ":"))]
        if self.env:
            words = ["env", *(f"{k}={v}" for k, v in self.env.items()), *words]
        return self.device.argv(words)


def missing_runtime(runtime: str, info: Mapping[str, Any]) -> str | None:
    """Why the probed device cannot run ``runtime`` (None: it can)."""
    wanted = DEVICE_RUNTIMES.get(runtime)
    versions = info.get("versions") or {}
    if wanted is None:
        return f"hsnet runs {' and '.join(DEVICE_RUNTIMES)} on devices, not {runtime}"
    if not versions.get("numpy"):
        return f"{info.get('device')} has no numpy (see hsnet device check {info.get('device')})"
    if not any(versions.get(d) for d in wanted):
        return f"{info.get('device')} has no {wanted[0]} (see hsnet device check {info.get('device')})"
    return None


def device_text(info: Mapping[str, Any]) -> str:
    """``qemu:cortex-a76 (emulated Cortex-A76)`` or ``ssh://board (Cortex-A76, aarch64)``: for figures."""
    cores = "/".join(sorted({c["name"] for c in info.get("core_names") or ()})) or "?"
    if info.get("emulated"):
        return f"{info.get('device')} (emulated {cores})"
    return f"{info.get('device')} ({cores}, {info.get('arch')})"


def ready_device(
    device: Device, artifacts: Sequence[Path], runtime: str, *, log: Callable[[str], None] = _log
) -> tuple[dict[str, Any], DeviceLauncher]:
    """Probe ``device``, check that it has ``runtime``, push the runner and ``artifacts``; return the probe and a
    launcher for workers of them.

    Raises:
        ToolFailure: the device cannot be reached, lacks Python, numpy or the runtime, or the push failed.
    """
    info = probe(device)
    why = missing_runtime(runtime, info)
    if why is not None:
        raise ToolFailure(why)
    where = push(device, [RUNNER_PATH, *artifacts], info["home"], log=log)
    return info, DeviceLauncher(device, where[RUNNER_PATH], {str(a): where[a] for a in artifacts})


def open_worker(
    device: Device,
    artifact: Path,
    runtime: str,
    *,
    threads: int = 1,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = _log,
) -> tuple[WorkerProcess, dict[str, Any]]:
    """Probe ``device``, push the runner and ``artifact``, start a worker for it; return it (started) and the
    probe.

    Raises:
        ToolFailure: the device cannot be reached, lacks Python, numpy or the runtime, the push failed, or the
            worker could not load the artifact there (exit 3), in one line naming the device.
    """
    info, launch = ready_device(device, [artifact], runtime, log=log)
    w = WorkerProcess({"runtime": runtime, "artifact": str(artifact), "threads": threads, "warmup_runs": 1,
                       "warmup_s": 0.0}, launch=launch)  # fmt: skip
    try:
        w.start(timeout_s)
    except (WorkerFailed, WorkerSkipped) as e:
        w.close()
        raise ToolFailure(f"{device.name}: the worker could not run {artifact.name} there ({e})") from None
    return w, info
