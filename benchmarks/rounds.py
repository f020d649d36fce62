"""Measure many configurations fairly on one noisy machine: one worker process per configuration, kept alive, and
timed in interleaved rounds.

Method (see docs/benchmarking.md):

1. GEMM peak: numpy's and (when installed) torch's float32 matmul at every thread count in the run; the best
   achieved GMAC/s is this machine's peak, against which each row's GMAC/s is put.
2. Workers start one after another (so each cold start is measured alone), each loads its artifact, runs it once
   (cold start) and warms up.
3. Rounds: in every round, in a fresh random order, each worker and the reference workload of its thread count runs
   a block of ``block_runs`` timed calls (after ``block_warmup`` untimed ones, which re-warm caches the previous
   worker evicted). Drift of the machine spreads over every configuration evenly, and every configuration has a
   same-round reference to be normalised by.
4. Each worker's empty-call timing gives the harness overhead; peak RSS comes from each worker at the end.

A worker that crashes, hangs past its deadline or reports an error becomes a ``failed`` row; one whose runtime is
missing becomes a ``skipped`` row; the others go on.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.schema import Row, ms_rounds
from hsnet.devices.handle import Launcher, WorkerFailed, WorkerProcess, WorkerSkipped
from hsnet.toolbox.progress import log as _log
from hsnet.toolbox.progress import progress

__all__ = ["Config", "Measurement", "Settings", "measure", "measure_gemm", "worker_job"]


#: Most timed calls of the reference workload per process and round (it takes ~8 ms a call on one core).
REFERENCE_BLOCK = 5


@dataclass
class Config:
    """One configuration to measure; ``row`` carries everything known before measuring (sizes, parity...).

    Attributes:
        row: the row to fill; a row whose status is not ``ok`` is passed through unmeasured.
        artifact: file the runtime loads (None for a row that is not measured).
        input_shape: NCHW input shape (needed by the torch runtime, whose .pt2 file does not record it).
        inject_delay_s: busy wait added inside every timed call (the gate's proof uses it as a real slowdown).
        inject_loop: iterations of an empty Python loop added inside every call (a fixed number of instructions:
            the instruction-count gate's proof).
        infer_input: take the row's batch and input size from the artifact itself (a file given by path).
    """

    row: Row
    artifact: Path | None = None
    input_shape: tuple[int, ...] | None = None
    inject_delay_s: float = 0.0
    infer_input: bool = False
    inject_loop: int = 0


@dataclass(frozen=True)
class Settings:
    """How to measure.

    Attributes:
        runs: timed runs per configuration (``rounds * processes * block_runs`` when ``min_time_s`` is None).
        rounds: number of interleaved rounds (the minimum when ``min_time_s`` is set).
        processes: worker processes per configuration, all measured in every round. A process carries a bias of
            its own (memory layout: 1-3 % here, see docs/benchmarking.md); several average it out.
        min_time_s: if set, keep adding rounds until every configuration has this many seconds of timed runs.
        max_rounds: upper bound on rounds with ``min_time_s``.
        block_warmup: untimed calls before each block.
        warmup_runs / warmup_s: warm-up after the cold start (at least this many calls and this long).
        pin: CPU ids every worker is pinned to (None: no pinning).
        start_timeout_s: deadline for a worker to import, load, run once and warm up.
        block_timeout_s: deadline for one block of timed runs.
        gemm: measure the GEMM peak.
        reference: measure the reference workload in every round (the gate needs it).
        overhead_runs: empty calls timed per worker for the harness overhead.
        huge_pages: back each worker's malloc with transparent huge pages (glibc's ``glibc.malloc.hugetlb=1``
            tunable; ignored elsewhere). Which physical pages a process gets otherwise biases its speed by up to
            5 % (cache set conflicts, TLB misses); with huge pages that bias fell to the sampling noise here.
        seed: seed of the round order.
        ops: after the rounds, a per-operator breakdown of each row from its runtime's own profiler
            (:mod:`benchmarks.ops`; ``ops_runs`` profiled calls, ``ops_layers`` keeps every node).
    """

    runs: int = 100
    rounds: int = 20
    processes: int = 2
    min_time_s: float | None = None
    max_rounds: int = 2000
    block_warmup: int = 1
    warmup_runs: int = 3
    warmup_s: float = 0.2
    pin: tuple[int, ...] | None = None
    start_timeout_s: float = 180.0
    block_timeout_s: float = 120.0
    gemm: bool = True
    reference: bool = True
    ops: bool = False
    ops_layers: bool = False
    ops_runs: int = 20
    overhead_runs: int = 2000
    huge_pages: bool = True
    seed: int = 0

    @property
    def block_runs(self) -> int:
        """Timed calls per process per round."""
        return max(1, math.ceil(self.runs / (self.rounds * self.processes)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": None if self.min_time_s else self.rounds * self.processes * self.block_runs,
            "rounds": self.rounds,
            "processes": self.processes,
            "block_runs": self.block_runs,
            "min_time_s": self.min_time_s,
            "block_warmup": self.block_warmup,
            "warmup_runs": self.warmup_runs,
            "warmup_s": self.warmup_s,
            "pin": None if self.pin is None else list(self.pin),
            "start_timeout_s": self.start_timeout_s,
            "block_timeout_s": self.block_timeout_s,
            "huge_pages": self.huge_pages,
            "seed": self.seed,
        }


@dataclass
class Measurement:
    """What :func:`measure` returns: the filled rows plus run-level figures for :class:`BenchResult`."""

    rows: list[Row]
    gemm: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    harness: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0


@dataclass
class _Group:
    """The worker processes of one configuration (or of the reference workload of one thread count) and what they
    have measured; ``rounds[j]`` holds the samples of all its processes in round ``j``."""

    row: Row | None  # None for a reference group
    threads: int
    workers: list[WorkerProcess] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    cpu_rounds: list[list[float]] = field(default_factory=list)
    switch_rounds: list[list[int]] = field(default_factory=list)
    per_process: dict[int, list[float]] = field(default_factory=dict)  # id(worker) -> its samples, all rounds
    cpu_s: float = 0.0
    wall_s: float = 0.0
    overhead_ns: list[float] = field(default_factory=list)
    lost: bool = False
    lost_reason: Exception | None = None

    @property
    def active(self) -> bool:
        return not self.lost and (self.row is None or self.row.ok)

    @property
    def timed_s(self) -> float:
        return sum(sum(b) for b in self.rounds)

    def close(self) -> None:
        for w in self.workers:
            w.close()


def measure_gemm(
    threads: Sequence[int],
    *,
    env: Mapping[str, str] | None = None,
    size: int = 1024,
    runs: int = 5,
    launch: Launcher | None = None,
) -> dict[str, Any]:
    """Achieved float32 GEMM throughput (GMAC/s) of numpy and torch at each thread count; ``peak`` is the best."""
    out: dict[str, Any] = {}
    for t in sorted(set(threads)):
        entry: dict[str, Any] = {"size": size}
        for backend in ("numpy", "torch"):
            job = {
                "runtime": "gemm",
                "gemm_backend": backend,
                "gemm_size": size,
                "threads": t,
                "warmup_runs": 2,
                "warmup_s": 0.0,
            }
            try:
                with WorkerProcess(job, env=env, launch=launch) as w:
                    ready = w.start(timeout_s=120)
                    best = min(min(w.request({"cmd": "run", "n": runs}, timeout_s=120)["t"]) for _ in range(2))
                    entry[backend] = round(ready["macs"] / best / 1e9, 2)
                    entry[f"{backend}_version"] = ready["runtime_version"]
            except (WorkerFailed, WorkerSkipped) as e:
                entry[backend] = None
                entry[f"{backend}_error"] = str(e)
        measured = [v for k, v in entry.items() if k in ("numpy", "torch") and v]
        entry["peak"] = max(measured) if measured else None
        out[str(t)] = entry
    return out


def worker_job(cfg: Config, settings: Settings) -> dict[str, Any]:
    """The runner job of ``cfg`` (see :mod:`hsnet.devices.worker`)."""
    row = cfg.row
    job: dict[str, Any] = {
        "runtime": row.runtime,
        "artifact": str(cfg.artifact),
        "threads": row.threads,
        "batch": row.batch,
        "warmup_runs": settings.warmup_runs,
        "warmup_s": settings.warmup_s,
        "pin": None if settings.pin is None else list(settings.pin),
        "inject_delay_s": cfg.inject_delay_s,
    }
    if cfg.inject_loop:
        job["inject_loop"] = cfg.inject_loop
    if cfg.input_shape is not None:
        job["input_shape"] = list(cfg.input_shape)
    return job


def measure(
    configs: Sequence[Config],
    settings: Settings = Settings(),
    *,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = _log,
    show_progress: bool = True,
    launch: Launcher | None = None,
) -> Measurement:
    """Measure every configuration whose row is ``ok`` and fill its row; return rows in the given order.

    Args:
        configs: what to measure.
        settings: how (see :class:`Settings`).
        env: extra environment for every worker (tests use it to hide a runtime).
        log: where progress lines go.
        show_progress: show a progress bar (or lines) over the rounds.
        launch: starts each worker on a device instead of here (:mod:`benchmarks.on_device`).
    """
    threads = sorted({c.row.threads for c in configs if c.row.ok})
    result = Measurement(rows=[c.row for c in configs])
    env = _worker_env(env, settings)
    if settings.gemm and threads:
        log(f"GEMM peak at {', '.join(map(str, threads))} thread(s)")
        result.gemm = measure_gemm(threads, env=env, launch=launch)

    groups: list[_Group] = []
    paths: dict[int, Path | None] = {}  # id(group) -> its artifact, for the per-operator breakdown
    try:
        todo = [c for c in configs if c.row.ok]
        for i, cfg in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] loading {cfg.row.label}")
            g = _Group(cfg.row, cfg.row.threads)
            groups.append(g)
            paths[id(g)] = cfg.artifact
            _start_group(g, worker_job(cfg, settings), settings, env, launch)
            if cfg.infer_input and g.workers:
                _input_from_artifact(g.row, g.workers[0].ready.get("input_shape") or [])
        if settings.reference:
            for t in sorted({g.threads for g in groups if g.active}):
                job = {
                    "runtime": "reference",
                    "threads": t,
                    "warmup_runs": settings.warmup_runs,
                    "warmup_s": settings.warmup_s,
                    "pin": None if settings.pin is None else list(settings.pin),
                }
                ref = _Group(None, t)
                _start_group(ref, job, settings, env, launch)
                if ref.lost:
                    _reference_lost(groups, t, ref.lost_reason or RuntimeError("unknown"))
                else:
                    groups.append(ref)
        for g in groups:
            _overhead(g, settings)
        result.rounds = _rounds(groups, settings, log, show_progress)
        for g in groups:
            if g.row is None or not g.row.ok:
                continue
            try:
                stats = [w.request({"cmd": "stats"}, settings.block_timeout_s) for w in g.workers]
            except WorkerFailed as e:
                g.row.status = f"failed: {e}"
                continue
            _fill_measured(g, stats, result.gemm)
            if settings.ops:
                _ops(g, paths[id(g)], settings, log)
        result.reference = {
            str(g.threads): {
                "samples_ms": ms_rounds(g.rounds),
                "cpu_samples_ms": ms_rounds(g.cpu_rounds),
                "switches": g.switch_rounds,
                "runtime_version": g.workers[0].ready.get("runtime_version"),
                "macs": g.workers[0].ready.get("macs"),
            }
            for g in groups
            if g.row is None
        }
        result.harness = _harness_summary(groups)
    finally:
        for g in groups:
            g.close()
    return result


def _ops(g: _Group, path: Path | None, settings: Settings, log: Callable[[str], None]) -> None:
    """The row's per-operator breakdown (:mod:`benchmarks.ops`) from its first worker, after the timed rounds."""
    from benchmarks.ops import breakdown

    row = g.row
    assert row is not None
    log(f"per-operator profile of {row.label}")
    try:
        reply = g.workers[0].request({"cmd": "ops", "n": settings.ops_runs, "warmup": 3}, settings.block_timeout_s)
    except WorkerFailed as e:
        row.ops = {"available": False, "reason": f"the profiler failed: {e}"}
        return
    if not reply.get("available"):
        row.ops = {"available": False, "reason": reply.get("reason", "not available")}
        return
    onnx = path if path is not None and path.suffix == ".onnx" else None
    median = row.latency.median_ms if row.latency else None
    row.ops = {"available": True, **breakdown(reply, onnx, median, layers=settings.ops_layers)}


def _worker_env(env: Mapping[str, str] | None, settings: Settings) -> dict[str, str]:
    out = dict(env or {})
    if settings.huge_pages:
        tunables = [t for t in (out.get("GLIBC_TUNABLES") or os.environ.get("GLIBC_TUNABLES", "")).split(":") if t]
        out["GLIBC_TUNABLES"] = ":".join([*tunables, "glibc.malloc.hugetlb=1"])
    return out


def _start_group(
    g: _Group, job: dict[str, Any], settings: Settings, env: Mapping[str, str] | None, launch: Launcher | None
) -> None:
    """Start ``settings.processes`` workers one after another; a skip or failure marks the whole group."""
    for k in range(settings.processes):
        w = WorkerProcess(job, env=env, launch=launch)
        try:
            ready = w.start(settings.start_timeout_s)
        except (WorkerSkipped, WorkerFailed) as e:
            word = "skipped" if isinstance(e, WorkerSkipped) else "failed"
            if g.row is not None:
                g.row.status = f"{word}: {e}"
            g.lost = True
            g.lost_reason = e
            g.close()
            return
        g.workers.append(w)
        if k == 0 and g.row is not None:
            _fill_start(g.row, ready)  # the first process's cold start: nothing of this model was loaded before


def _overhead(g: _Group, settings: Settings) -> None:
    if settings.overhead_runs <= 0 or not g.active:
        return
    try:
        for w in g.workers:
            t = w.request({"cmd": "overhead", "n": settings.overhead_runs}, settings.block_timeout_s)["t"]
            g.overhead_ns.append(float(np.median(t) * 1e9))
    except WorkerFailed as e:
        _group_failed(g, e, "")


def _group_failed(g: _Group, error: Exception, where: str) -> None:
    g.lost = True
    g.close()
    if g.row is not None:
        g.row.status = f"failed: {error}{where}"


def _rounds(groups: list[_Group], settings: Settings, log: Callable[[str], None], show_progress: bool) -> int:
    """Run interleaved rounds until done; returns the number of rounds run."""
    rng = random.Random(settings.seed)
    k = settings.block_runs
    desc = f"measuring {settings.rounds} rounds x {k} runs x {settings.processes} process(es)"
    if settings.min_time_s is None:
        rounds_iter: Any = range(settings.rounds)
        if show_progress:
            rounds_iter = progress(rounds_iter, desc=desc)
    else:
        rounds_iter = range(settings.max_rounds)
    done = 0
    for r in rounds_iter:
        active = [g for g in groups if g.active]
        if not any(g.row is not None for g in active):
            break
        if settings.min_time_s is not None and r >= settings.rounds:
            if all(g.timed_s >= settings.min_time_s for g in active):
                break
            if r % 10 == 0:
                least = min(g.timed_s for g in active)
                log(f"round {r}: least measured configuration has {least:.2f} of {settings.min_time_s:g} s")
        slots = [(g, w) for g in active for w in g.workers]
        rng.shuffle(slots)
        blocks: dict[int, list[dict[str, Any]]] = {id(g): [] for g in active}
        for g, w in slots:
            if not g.active:
                continue
            try:
                # The reference needs only enough calls for a block median; more would just cost time.
                n = k if g.row is not None else min(k, REFERENCE_BLOCK)
                reply = w.request({"cmd": "run", "n": n, "warmup": settings.block_warmup}, settings.block_timeout_s)
            except WorkerFailed as e:
                _group_failed(g, e, f" in round {r + 1}")
                if g.row is None:
                    # Without its reference no row of this thread count can be normalised: fail them, loudly.
                    _reference_lost(groups, g.threads, e)
                continue
            blocks[id(g)].append(reply)
            g.per_process.setdefault(id(w), []).extend(reply["t"])
        for g in active:
            if g.active:
                replies = blocks[id(g)]
                g.rounds.append([t for rep in replies for t in rep["t"]])
                g.cpu_rounds.append([c for rep in replies for c in rep["c"]])
                g.switch_rounds.append([v for rep in replies for v in rep["v"]])
                g.cpu_s += sum(rep["cpu_s"] for rep in replies)
                g.wall_s += sum(rep["wall_s"] for rep in replies)
        done = r + 1
    return done


def _reference_lost(groups: list[_Group], threads: int, error: Exception) -> None:
    for g in groups:
        if g.row is not None and g.row.ok and g.threads == threads:
            g.row.status = f"failed: reference workload failed: {error}"


def _input_from_artifact(row: Row, shape: list[int]) -> None:
    if len(shape) == 4:
        row.batch = shape[0]
        row.input_size = shape[2] if shape[1] in (1, 3) else shape[1]  # NCHW or NHWC


def _fill_start(row: Row, ready: dict[str, Any]) -> None:
    row.runtime_version = ready.get("runtime_version")
    row.import_ms = ready["import_s"] * 1e3
    row.load_ms = ready["load_s"] * 1e3
    row.first_inference_ms = ready["first_s"] * 1e3
    row.cold_start_ms = row.load_ms + row.first_inference_ms


def flag_row(row: Row, per_process: list[list[float]]) -> None:
    """Record each process's median and flag a row whose samples are bimodal or whose processes disagree beyond
    their intervals (:func:`benchmarks.stats.bimodality`, :func:`benchmarks.stats.process_disagreement`):
    one slow process, or a slow stretch of one, must not pass for the configuration's speed."""
    from benchmarks.stats import bimodality, process_disagreement

    ms = [[t * 1e3 for t in samples] for samples in per_process]
    row.process_medians_ms = [round(float(np.median(s)), 6) for s in ms if s] or None
    modes = bimodality([t for s in ms for t in s])
    if modes is not None:
        low = 100 * (1 - modes["high_share"])
        row.flags.append(
            f"bimodal: {low:.0f} % of the samples near {modes['low_ms']:.3g} ms, {100 - low:.0f} % near "
            f"{modes['high_ms']:.3g} ms"
        )
    apart = process_disagreement(ms)
    if apart is not None:
        medians = ", ".join(f"{m:.3g}" for m in apart["medians"])
        row.flags.append(f"processes disagree: medians {medians} ms ({apart['ratio']:.2f}x, intervals apart)")


def _fill_measured(g: _Group, stats: list[dict[str, Any]], gemm: dict[str, Any]) -> None:
    row = g.row
    assert row is not None
    row.set_samples(g.rounds, g.cpu_rounds)
    row.switches = g.switch_rounds
    flag_row(row, [g.per_process[id(w)] for w in g.workers if id(w) in g.per_process])
    row.peak_rss_mb = max(s["peak_rss_bytes"] for s in stats) / 2**20
    row.cpu_util = g.cpu_s / g.wall_s if g.wall_s > 0 else None
    assert row.latency is not None
    if row.macs:
        row.gmacs_per_s = row.macs * row.batch / (row.latency.median_ms / 1e3) / 1e9
        peak = (gemm.get(str(row.threads)) or {}).get("peak")
        row.peak_share = row.gmacs_per_s / peak if peak else None


def _harness_summary(groups: list[_Group]) -> dict[str, Any]:
    overheads = [o for g in groups for o in g.overhead_ns]
    fastest = min(
        (g.row.latency.median_ms for g in groups if g.row is not None and g.row.ok and g.row.latency),
        default=None,
    )
    out: dict[str, Any] = {
        "overhead_ns": float(np.median(overheads)) if overheads else None,
        "overhead_ns_max": max(overheads) if overheads else None,
        "fastest_median_ms": fastest,
    }
    if overheads and fastest:
        out["overhead_share"] = max(overheads) / (fastest * 1e6)
    return out
