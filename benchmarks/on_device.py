"""``hsnet bench --remote DEVICE``: the same table as ``--device cpu``, measured on devices.

Artifacts are built here, pushed once with the self-contained runner (:mod:`hsnet.devices.push`), and each worker
runs on the device, speaking the usual JSON lines over the device's channel (ssh, or the emulator's pipes). On a
board the rows are timed in interleaved rounds exactly as on the host (:func:`benchmarks.rounds.measure`, its
GEMM peak and reference workload measured there); on an emulated device, whose time is not a latency, each row is
its guest instructions per inference, counted by the emulator's plugin, with the instruction classes that show
which kernels ran. A device that cannot be reached, lacks Python or a runtime, or loses a worker gives
``failed``/``skipped`` rows naming it; the other devices go on.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from benchmarks.environment import collect_environment
from benchmarks.rounds import Config, Settings, measure, worker_job
from benchmarks.schema import BenchResult, Row
from benchmarks.suite import BenchRequest, plan_configs, validate_request
from hsnet.devices.cost import COUNTED_CALLS, count_instructions
from hsnet.devices.handle import RUNNER_PATH, WorkerFailed, WorkerSkipped
from hsnet.devices.push import push, remote_base
from hsnet.devices.remote import Device, device_arch, probe
from hsnet.devices.session import DeviceLauncher, missing_runtime
from hsnet.errors import HSNetError, ToolFailure
from hsnet.toolbox.machine import host_arch
from hsnet.toolbox.progress import log as _log

__all__ = ["DeviceOptions", "pick_cores", "run_on_devices"]

#: Two processes' counts of a row further apart than this are flagged (they agree to a few hundred instructions).
COUNT_AGREEMENT = 0.001


@dataclass(frozen=True)
class DeviceOptions:
    """How to treat the devices: pinning, cool-down, thermal guard.

    Attributes:
        cores: ``big``, ``little`` or CPU ids ("4,5,6,7"): each worker is pinned there (None: not pinned).
        cooldown_s: idle seconds before the interleaved rounds of a board (before each configuration on the
            emulated device, which measures them one after another).
        thermal_limit_c: before each configuration, wait while a thermal zone is above this (at most
            ``thermal_wait_s``), and say so in the row.
    """

    cores: str | None = None
    cooldown_s: float = 0.0
    thermal_limit_c: float | None = None
    thermal_wait_s: float = 300.0


def pick_cores(spec: str | None, info: Mapping[str, Any]) -> tuple[int, ...] | None:
    """CPU ids for ``--cores big|little|LIST`` on the probed device (big: the cores of the highest maximum
    frequency, little: the lowest; by core name where the frequencies are unreadable).

    Raises:
        HSNetError: a list naming CPUs the device lacks, or big/little on a device with one kind of core.
    """
    if spec is None:
        return None
    ncores = int(info.get("cores") or 0)
    if spec not in ("big", "little"):
        try:
            ids = tuple(sorted({int(w) for w in spec.split(",") if w.strip()}))
        except ValueError:
            raise HSNetError(f"--cores {spec!r}: give big, little or CPU ids such as 4,5,6,7") from None
        bad = [i for i in ids if not 0 <= i < ncores]
        if not ids or bad:
            raise HSNetError(f"--cores {spec!r}: {info.get('device')} has CPUs 0..{ncores - 1}")
        return ids
    freq = {int(f["cpu"]): int(f["max_khz"]) for f in info.get("freq") or () if str(f.get("max_khz")).isdigit()}
    if len(set(freq.values())) > 1:
        pick = max(freq.values()) if spec == "big" else min(freq.values())
        return tuple(sorted(c for c, khz in freq.items() if khz == pick))
    names = {c["cpu"]: c["name"] for c in info.get("core_names") or ()}
    if len(set(names.values())) > 1:  # no frequencies: by name, a lower Cortex-A number being the smaller core
        order = sorted(set(names.values()))
        pick = order[-1] if spec == "big" else order[0]
        return tuple(sorted(c for c, n in names.items() if n == pick))
    raise HSNetError(f"--cores {spec}: {info.get('device')} has one kind of core; give CPU ids instead")


def run_on_devices(
    req: BenchRequest,
    devices: Sequence[Device],
    *,
    options: DeviceOptions = DeviceOptions(),
    metric: str | None = None,
    log: Callable[[str], None] = _log,
    planned: Sequence[Config] | None = None,
) -> BenchResult:
    """Build the artifacts here, then measure every configuration on each device (see the module docstring).

    ``metric``: ``instructions`` (emulated devices only: rows on a real one are skipped), ``time`` (real devices
    only: an emulated one's rows are skipped, its time being no latency), None: each device's own (what its probe
    says it is). ``planned``: configurations already planned (and built) for ``req``, instead of planning them.

    Raises:
        BenchError: an invalid request (before any work).
    """
    validate_request(req)
    start = time.perf_counter()
    environment = collect_environment()
    plans: dict[str | None, list[Config]] = {}
    rows: list[Row] = []
    infos: dict[str, Any] = {}
    gemm: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    for device in devices:
        arch = None if planned is not None else _arch(device)
        if arch not in plans:  # artifacts are built for each device's CPU family (deploy's --arch)
            plans[arch] = list(planned) if planned is not None else plan_configs(replace(req, arch=arch), log)
        mine = [replace(c, row=copy.deepcopy(c.row)) for c in plans[arch]]
        for c in mine:
            c.row.device = device.name
        info = _on_device(device, mine, req.settings, options, metric, log)
        if info is not None:
            infos[device.name] = {k: v for k, v in info.items() if k not in ("cpuinfo", "measured")}
            measured = info.get("measured") or {}
            gemm.update({f"{device.name} {k}": v for k, v in (measured.get("gemm") or {}).items()})
            reference.update({f"{device.name} {k}": v for k, v in (measured.get("reference") or {}).items()})
        rows += [c.row for c in mine]
    environment["devices"] = infos
    counted = [_emulated(i) for i in infos.values()]
    settings = {**req.settings.to_dict(), "request": {**req.to_dict(), "remote": [d.name for d in devices]},
                "metric": "instructions" if counted and all(counted) else "time",
                "counted_calls": COUNTED_CALLS}  # fmt: skip
    return BenchResult(
        rows=rows,
        environment=environment,
        settings=settings,
        gemm=gemm,
        reference=reference,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.perf_counter() - start, 1),
    )


def _arch(device: Device) -> str:
    """The CPU family to build ``device``'s artifacts for (this machine's when its probe fails: the device's rows
    then say why)."""
    try:
        return device_arch(device)
    except ToolFailure:
        return host_arch()


def _emulated(info: Mapping[str, Any]) -> bool:
    return bool(info.get("emulated"))


def _fail(configs: Sequence[Config], word: str, reason: str) -> None:
    for c in configs:
        if c.row.ok:
            c.row.status = f"{word}: {reason}"


def _on_device(
    device: Device,
    configs: list[Config],
    settings: Settings,
    options: DeviceOptions,
    metric: str | None,
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """Measure ``configs`` on one device; their rows say what happened. Returns what the probe read."""
    try:
        info = probe(device)
    except ToolFailure as e:
        _fail(configs, "failed", str(e))
        log(f"{device.name}: {e}")
        return None
    if metric == "instructions" and not _emulated(info):
        _fail(configs, "skipped", f"{device.name} is not emulated: instruction counts need the emulated device")
    if metric == "time" and _emulated(info):
        _fail(configs, "skipped", f"{device.name} is emulated ({info['emulated']}): its time is not a latency")
    for c in configs:
        why = missing_runtime(c.row.runtime, info) if c.row.ok else None
        if why is not None:
            c.row.status = f"skipped: {why}"
    todo = [c for c in configs if c.row.ok]
    if not todo:
        return info
    settings = replace(settings, pin=pick_cores(options.cores, info), huge_pages=False)
    try:
        files = [RUNNER_PATH, *{c.artifact for c in todo if c.artifact is not None}]
        where = push(device, files, info["home"], log=log)
    except ToolFailure as e:
        _fail(todo, "failed", str(e))
        return info
    artifacts = {str(p): where[p] for p in files if p != RUNNER_PATH}
    block = _device_block(info)
    if _emulated(info):
        base = remote_base(info["home"])
        for i, c in enumerate(todo, 1):
            _guard(device, options, c.row, log)
            log(f"[{i}/{len(todo)}] counting instructions of {c.row.label} ({info['emulated']})")
            _count_row(c, settings, DeviceLauncher(device, where[RUNNER_PATH], artifacts), base)
            c.row.device_info = block
    else:
        _guard(device, options, todo[0].row, log)
        launch = DeviceLauncher(device, where[RUNNER_PATH], artifacts)
        m = measure(todo, settings, log=log, launch=launch)
        info["measured"] = {"gemm": m.gemm, "reference": m.reference}
        after = _temps(device)
        for c in todo:
            c.row.device_info = {**block, "temps_after_c": after}
            _thermal_flag(c.row, options)
    return info


def _device_block(info: Mapping[str, Any]) -> dict[str, Any]:
    """The rows' ``device`` block: what the probe read, without the raw /proc/cpuinfo text."""
    cores = info.get("core_names") or []
    return {
        "name": info.get("device"),
        "arch": info.get("arch"),
        "emulated": info.get("emulated"),
        "cores": [c["name"] for c in cores],
        "features": sorted({f for c in cores for f in c.get("features", ())}),
        "freq": info.get("freq"),
        "temps_before_c": info.get("temps_c"),
        "kernel": info.get("kernel"),
        "python": info.get("python"),
        "versions": info.get("versions"),
    }


def _count_row(cfg: Config, settings: Settings, launch: DeviceLauncher, base: str) -> None:
    """The row's guest instructions per inference: median of :data:`COUNTED_CALLS` steady-state calls, in each of
    ``settings.processes`` processes (flagged when they disagree beyond :data:`COUNT_AGREEMENT`)."""
    job = worker_job(cfg, settings)
    per_process: list[float] = []
    classes: list[dict[str, Any]] = []
    for _ in range(max(1, settings.processes)):
        try:
            median = count_instructions(launch, job, base, settings.start_timeout_s)
        except WorkerSkipped as e:
            cfg.row.status = f"skipped: {launch.device.name}: {e}"
            return
        except WorkerFailed as e:
            cfg.row.status = f"failed: {launch.device.name}: {e}"
            return
        cfg.row.runtime_version = median.pop("runtime_version")
        per_process.append(float(median["insns"]))
        classes.append(median)
    cfg.row.instructions = statistics.median(per_process)
    pick = classes[per_process.index(min(per_process, key=lambda v: abs(v - cfg.row.instructions)))]
    cfg.row.kernels = {k: float(v) for k, v in pick.items() if k != "insns"}
    spread = (max(per_process) - min(per_process)) / cfg.row.instructions if cfg.row.instructions else 0.0
    if spread > COUNT_AGREEMENT:
        cfg.row.flags.append(f"processes disagree: instruction counts {min(per_process):.0f}-{max(per_process):.0f}")


def _temps(device: Device) -> dict[str, float] | None:
    try:
        return probe(device).get("temps_c")
    except ToolFailure:
        return None


def _guard(device: Device, options: DeviceOptions, row: Row, log: Callable[[str], None]) -> None:
    """Cool-down, then wait while a thermal zone is above the limit (noted in the row's flags)."""
    if options.cooldown_s > 0:
        log(f"{device.name}: cooling down {options.cooldown_s:g} s")
        time.sleep(options.cooldown_s)
    if options.thermal_limit_c is None:
        return
    deadline = time.monotonic() + options.thermal_wait_s
    waited = 0.0
    while True:
        temps = _temps(device) or {}
        hot = {k: v for k, v in temps.items() if v > options.thermal_limit_c}
        if not hot or time.monotonic() >= deadline:
            break
        log(f"{device.name}: waiting for {', '.join(f'{k} {v:.0f} C' for k, v in hot.items())} to fall below "
            f"{options.thermal_limit_c:g} C")  # fmt: skip
        time.sleep(5.0)
        waited += 5.0
    if waited:
        row.flags.append(f"thermal: waited {waited:.0f} s for the zones to fall below {options.thermal_limit_c:g} C")
    if hot:
        row.flags.append(f"thermal: still above {options.thermal_limit_c:g} C after {options.thermal_wait_s:g} s "
                         f"({', '.join(f'{k} {v:.0f} C' for k, v in hot.items())})")  # fmt: skip


def _thermal_flag(row: Row, options: DeviceOptions) -> None:
    after = (row.device_info or {}).get("temps_after_c") or {}
    if options.thermal_limit_c is not None:
        hot = {k: v for k, v in after.items() if v > options.thermal_limit_c}
        if hot:
            row.flags.append(f"thermal: {', '.join(f'{k} {v:.0f} C' for k, v in hot.items())} after the rounds "
                             f"(limit {options.thermal_limit_c:g} C): throttling may be in the figures")  # fmt: skip
