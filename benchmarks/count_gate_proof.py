"""Proof of the instruction-count gate on the emulated ARM device: A/A false alarms and injected-slowdown detection.

As :mod:`benchmarks.gate_proof` does for time: for each of ``pairs`` trials, two more independent runs (fresh
worker processes on the device, as CI makes them) are judged by the gate against a first run A: B of the same
artifacts (any ``regression`` is a false alarm) and S, the same artifacts with a real slowdown in every call (any
row not called a regression is a miss). The slowdown is an empty Python loop inside the call, of a fixed number of
instructions, calibrated per row to ``slowdown`` (3 %) of its count: one calibration run with a known loop gives
each row's instructions per iteration.

Run (about a minute per trial here for HSNet at 96 px, both runtimes, fp32 and int8)::

    hsnet bench gate-proof --remote qemu:cortex-a76 --pairs 3 --json proof.json
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from benchmarks.gate import compare_results
from benchmarks.on_device import run_on_devices
from benchmarks.schema import BenchResult
from benchmarks.suite import BenchRequest, plan_configs
from hsnet.devices.remote import Device
from hsnet.toolbox.progress import log as _log

__all__ = ["run_count_proof"]

#: Loop iterations of the calibration run.
CALIBRATION_LOOP = 20_000


def run_count_proof(
    req: BenchRequest,
    device: Device,
    *,
    pairs: int = 3,
    slowdown: float = 0.03,
    threshold: float = 0.01,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Run the trials; return the tallies, each trial's verdicts and changes, and the runs' counts."""
    configs = plan_configs(req, log)

    def once(loops: dict[tuple, int] | None, what: str) -> BenchResult:
        log(f"--- {what}")
        fixed = [replace(c, inject_loop=(loops or {}).get(c.row.key[:6], 0)) for c in configs]
        return run_on_devices(req, [device], metric="instructions", log=log, planned=fixed)

    a = once(None, "run A (the baseline)")
    cal = once({c.row.key[:6]: CALIBRATION_LOOP for c in configs}, f"calibration: {CALIBRATION_LOOP} loop iterations")
    per_iteration = {r.key[:6]: (c.instructions - r.instructions) / CALIBRATION_LOOP
                     for r, c in zip(a.rows, cal.rows, strict=True) if r.instructions and c.instructions}  # fmt: skip
    loops = {k: max(1, round(slowdown * r.instructions / per_iteration[k]))
             for r in a.rows if (k := r.key[:6]) in per_iteration and per_iteration[k] > 0}  # fmt: skip
    trials: list[dict[str, Any]] = []
    false_alarms = caught = aa = ss = 0
    for t in range(pairs):
        b = once(None, f"trial {t + 1}/{pairs}: run B (unchanged)")
        s = once(loops, f"trial {t + 1}/{pairs}: run S (+{100 * slowdown:.0f} % injected)")
        rb = compare_results(a, b, threshold=threshold, metric="instructions")
        rs = compare_results(a, s, threshold=threshold, metric="instructions")
        aa += len(rb.rows)
        ss += len(rs.rows)
        false_alarms += sum(v.verdict == "regression" for v in rb.rows)
        caught += sum(v.verdict == "regression" for v in rs.rows)
        trials.append({
            "aa": {v.label: [v.verdict, v.change.ratio if v.change else None] for v in rb.rows},
            "slowdown": {v.label: [v.verdict, v.change.ratio if v.change else None] for v in rs.rows},
        })  # fmt: skip
    return {
        "device": device.name,
        "slowdown": slowdown,
        "threshold": threshold,
        "loops": {" ".join(map(str, k)): n for k, n in loops.items()},
        "counts_a": {r.label: r.instructions for r in a.rows},
        "false_alarms": false_alarms,
        "aa_comparisons": aa,
        "caught": caught,
        "slowdown_comparisons": ss,
        "trials": trials,
    }
