"""What one inference of an artifact costs on a device: guest instructions on the emulated one, time on a board.

``hsnet bench --remote`` measures rows with this module's :func:`count_instructions` (emulated) and its own
interleaved rounds (boards); ``hsnet deploy export --tune --remote`` compares a layer rewrite's variants, whole
artifacts, with :func:`costs_on_device`. On the emulated device time means nothing (100-700x slower, +-40 %) but
instruction counts are exact from run to run, so variants are compared by their counts; on a board by the
median wall time of interleaved rounds, in one worker process per variant.
"""

from __future__ import annotations

import random
import statistics
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hsnet.devices.handle import WorkerFailed, WorkerProcess, WorkerSkipped
from hsnet.devices.push import remote_base
from hsnet.devices.remote import Device
from hsnet.devices.session import DeviceLauncher, device_text, ready_device
from hsnet.errors import ToolFailure
from hsnet.toolbox.progress import log as _log

__all__ = ["COUNTED_CALLS", "DeviceCosts", "count_instructions", "costs_on_device"]

#: Counted calls per process on the emulated device (after one uncounted call past the worker's warm-up).
COUNTED_CALLS = 3


def count_instructions(launch: DeviceLauncher, job: Mapping[str, Any], base: str, timeout_s: float) -> dict[str, Any]:
    """One worker process on the emulated device: its median counted call (``insns`` and the instruction
    classes) and ``runtime_version``.

    Raises:
        WorkerFailed, WorkerSkipped: as :class:`WorkerProcess` raises them.
    """
    counting = replace(launch, env={"HSNET_INSN_FILE": f"{base}/counts-{uuid.uuid4().hex}.txt"})
    w = WorkerProcess({**job, "warmup_runs": 1, "warmup_s": 0.0}, launch=counting)
    try:
        ready = w.start(timeout_s)
        reply = w.request({"cmd": "count", "n": COUNTED_CALLS, "warmup": 1}, timeout_s)
    finally:
        w.close()
    calls = sorted(reply["calls"], key=lambda c: c["insns"])
    return {**calls[len(calls) // 2], "runtime_version": ready.get("runtime_version")}


@dataclass
class DeviceCosts:
    """Each file's cost per inference on one device: ``unit`` is ``instructions`` (emulated) or ``ms``."""

    device: str
    unit: str
    costs: dict[Path, float] = field(default_factory=dict)
    runtime_version: str | None = None


def costs_on_device(
    device: Device,
    files: Sequence[Path],
    runtime: str,
    *,
    threads: int = 1,
    rounds: int = 10,
    runs: int = 10,
    timeout_s: float = 900.0,
    log: Callable[[str], None] = _log,
) -> DeviceCosts:
    """Push ``files`` (artifacts of ``runtime``) to ``device`` and measure one inference of each there.

    Raises:
        ToolFailure: the device cannot be reached, lacks the runtime, or a worker failed there (one line naming
            the device and the file).
    """
    info, launch = ready_device(device, files, runtime, log=log)
    text = device_text(info)
    out = DeviceCosts(text, "instructions" if info.get("emulated") else "ms")
    jobs = {f: {"runtime": runtime, "artifact": str(f), "threads": threads, "seed": 0} for f in files}
    if info.get("emulated"):
        base = remote_base(info["home"])
        for i, f in enumerate(files, 1):
            log(f"[deploy] {device.name}: counting instructions of {f.name} ({i}/{len(files)})")
            try:
                median = count_instructions(launch, jobs[f], base, timeout_s)
            except (WorkerFailed, WorkerSkipped) as e:
                raise ToolFailure(f"{device.name}: {f.name} did not run there ({e})") from None
            out.costs[f] = float(median["insns"])
            out.runtime_version = median.get("runtime_version")
        return out
    workers = {f: WorkerProcess({**jobs[f], "warmup_runs": 3, "warmup_s": 0.0}, launch=launch) for f in files}
    samples: dict[Path, list[float]] = {f: [] for f in files}
    try:
        for w in workers.values():
            out.runtime_version = w.start(timeout_s).get("runtime_version")
        order = list(files)
        rng = random.Random(0)
        for r in range(rounds):
            rng.shuffle(order)
            log(f"[deploy] {device.name}: timing {len(files)} variant(s), round {r + 1}/{rounds}")
            for f in order:
                samples[f] += workers[f].request({"cmd": "run", "n": runs, "warmup": 1}, timeout_s)["t"]
    except (WorkerFailed, WorkerSkipped) as e:
        raise ToolFailure(f"{device.name}: a variant did not run there ({e})") from None
    finally:
        for w in workers.values():
            w.close()
    out.costs = {f: statistics.median(v) * 1e3 for f, v in samples.items()}
    return out
