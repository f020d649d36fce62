"""Deterministic instruction counts per inference under valgrind (``hsnet bench --metric instructions``).

Wall time on a shared machine is noisy; the number of instructions an inference executes is not. Each
configuration's runner is started twice under ``valgrind --tool=cachegrind --cache-sim=no`` (instruction counting
only), once running ``n1`` and once ``n2`` inferences after the same start-up; the difference divided by
``n2 - n1`` is the count of one inference, free of interpreter start-up, imports and loading. Start-up itself
varies by about 0.04 % (713.32-713.59 M instructions in three runs of a small model), which ``n2 - n1`` spreads
thin. But now and then a run executes tens of millions of instructions fewer than the others (652.86 M against
714.86-718.23 M in one of four runs here; differences of -25 M, -56 M and -61 M in three runs of the test), which
would make a one-run difference meaningless: each count is therefore the largest of ``repeats`` runs (3 by
default). The cause of the short runs was not found.

Caveats (see docs/benchmarking.md for how well the counts track wall time):

- valgrind runs programs 50-100x slower, so use small inputs (32-96 px);
- valgrind 3.19's virtual CPU has no AVX-512 or AMX, so runtimes take their AVX2 kernels: counts describe that
  code path, which is what makes them comparable across machines;
- an instruction is not a cycle: memory stalls and vector width are invisible to this metric.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.environment import collect_environment
from benchmarks.errors import BenchError
from benchmarks.rounds import Config, Settings, worker_job
from benchmarks.schema import BenchResult
from benchmarks.suite import BenchRequest, plan_configs, validate_request
from hsnet.devices.handle import WorkerFailed, WorkerProcess, WorkerSkipped
from hsnet.toolbox.progress import log as _log

__all__ = ["count_instructions", "run_instructions", "track_time"]

_SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


def _valgrind() -> str:
    path = shutil.which("valgrind")
    if path is None:
        raise BenchError("--metric instructions needs valgrind on PATH (e.g. apt-get install valgrind)")
    return path


def _count_once(cfg: Config, n: int, timeout_s: float, valgrind: str) -> int:
    """Instructions of a whole worker run (start-up, ``n`` inferences, exit); fills the row's runtime version."""
    settings = Settings(warmup_runs=1, warmup_s=0.0, huge_pages=False)  # a fixed amount of warm-up work
    job = {**worker_job(cfg, settings), "threads": cfg.row.threads}
    with tempfile.TemporaryDirectory(prefix="hsnet-cg-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        prefix = [valgrind, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", "-q"]
        w = WorkerProcess(job, env={"PYTHONHASHSEED": "0"}, prefix=prefix)
        try:
            ready = w.start(timeout_s)
            cfg.row.runtime_version = ready.get("runtime_version")
            if n:
                w.request({"cmd": "run", "n": n, "warmup": 0}, timeout_s)
        finally:
            w.close(wait_s=timeout_s)  # valgrind writes its counts when the worker exits
        match = _SUMMARY.search(out.read_bytes()) if out.exists() else None
        if match is None:
            raise WorkerFailed("valgrind wrote no instruction count")
        return int(match.group(1))


def count_instructions(cfg: Config, *, n1: int = 2, n2: int = 12, timeout_s: float = 900.0, repeats: int = 2) -> float:
    """Instructions of one inference of ``cfg``: ``(count(n2) - count(n1)) / (n2 - n1)``, each count the smallest
    of ``repeats`` runs.

    Raises:
        BenchError: valgrind is not installed.
        WorkerFailed: a valgrind run failed or timed out.
        WorkerSkipped: the runtime is not installed.
    """
    valgrind = _valgrind()
    a = max(_count_once(cfg, n1, timeout_s, valgrind) for _ in range(max(repeats, 1)))
    b = max(_count_once(cfg, n2, timeout_s, valgrind) for _ in range(max(repeats, 1)))
    return (b - a) / (n2 - n1)


def run_instructions(req: BenchRequest, *, n1: int = 1, n2: int = 4, log: Callable[[str], None] = _log) -> BenchResult:
    """Like :func:`benchmarks.suite.run_bench`, but each row gets ``instructions`` instead of latency."""
    validate_request(req)
    _valgrind()
    environment = collect_environment()
    start = datetime.now(timezone.utc)
    configs = plan_configs(req, log)
    for i, cfg in enumerate(configs, 1):
        if not cfg.row.ok:
            continue
        log(f"[{i}/{len(configs)}] counting instructions of {cfg.row.label} under valgrind")
        try:
            cfg.row.instructions = count_instructions(cfg, n1=n1, n2=n2, timeout_s=max(req.settings.start_timeout_s,
                                                                                        900.0))  # fmt: skip
        except WorkerSkipped as e:
            cfg.row.status = f"skipped: {e}"
        except WorkerFailed as e:
            cfg.row.status = f"failed: {e}"
    settings = {**replace(req.settings).to_dict(), "metric": "instructions", "n1": n1, "n2": n2,
                "request": req.to_dict()}  # fmt: skip
    return BenchResult(
        rows=[c.row for c in configs],
        environment=environment,
        settings=settings,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=round((datetime.now(timezone.utc) - start).total_seconds(), 1),
    )


def track_time(counted: BenchResult, timed: BenchResult) -> dict[str, object]:
    """How well instruction counts track time across the rows both results measured.

    Returns the Pearson correlation of log(instructions) with log(median CPU time) and with log(median wall time),
    the Spearman rank correlations, and the rows used. Needs at least 3 common rows.
    """
    import numpy as np

    times = {r.key: r for r in timed.rows if r.ok and r.latency}
    pairs = [(r.instructions, times[r.key]) for r in counted.rows if r.ok and r.instructions and r.key in times]
    if len(pairs) < 3:
        raise BenchError("need at least 3 rows measured in both results to correlate")
    instr = np.log([p[0] for p in pairs])
    out: dict[str, object] = {"rows": [t.label for _, t in pairs]}
    for name, values in (
        ("cpu", [t.cpu_median_ms for _, t in pairs]),
        ("wall", [t.latency.median_ms for _, t in pairs]),
    ):
        y = np.log(np.asarray(values, dtype=float))
        out[f"pearson_log_{name}"] = float(np.corrcoef(instr, y)[0, 1])
        out[f"spearman_{name}"] = float(np.corrcoef(instr.argsort().argsort(), y.argsort().argsort())[0, 1])
    out["ns_per_instruction"] = [round(t.cpu_median_ms * 1e6 / i, 3) for i, t in pairs]
    return out
