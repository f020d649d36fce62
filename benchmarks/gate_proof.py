"""Proof that the regression gate works on a noisy machine: A/A false alarms and injected-slowdown detection.

For each of ``--pairs`` trials, three independent runs are made in a random order (fresh worker processes each,
as CI makes them): A and B of identical artifacts, and S, the same artifacts with a real slowdown injected into
every timed call: a busy wait of CPU work calibrated to ``--slowdown`` (10 %) of the configuration's median CPU
time per inference, measured beforehand. The gate then compares B against A (an A/A comparison: any
``regression`` verdict is a false alarm) and S against A (any ``pass`` is a miss).

The same runs are also judged with the alternatives the gate did not choose (wall-clock time instead of CPU time,
no normalisation by the reference, "95 % interval entirely above the threshold" instead of "significant and above
the threshold"), so that docs/benchmarking.md can show why the gate is what it is.

Run (about 10 s per trial here)::

    hsnet bench gate-proof --pairs 100 --json proof.json
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.artifacts import RUNTIME_TARGETS, ModelSpec, build_artifacts, cache_dir
from benchmarks.environment import collect_environment
from benchmarks.gate import DEFAULT_ALPHA, is_regression
from benchmarks.rounds import Config, Settings, measure
from benchmarks.schema import Row
from benchmarks.stats import Change, compare_rounds

__all__ = ["run_proof"]

#: (metric, normalised, rule) variants judged on the same runs; the first is the gate's.
VARIANTS = [
    ("cpu", True, "significant+threshold"),
    ("cpu", True, "ci-above-threshold"),
    ("cpu", False, "significant+threshold"),
    ("wall", True, "significant+threshold"),
    ("wall", False, "significant+threshold"),
]


def _decide(change: Change, threshold: float, rule: str) -> bool:
    if rule == "significant+threshold":
        return is_regression(change, threshold, DEFAULT_ALPHA)
    return change.ci95[0] - 1.0 > threshold


def _configs(rows: list[tuple[Row, Path]], delays: dict[tuple, float] | None) -> list[Config]:
    out = []
    for row, path in rows:
        fresh = Row(**{**row.__dict__})
        shape = (row.batch, 3, row.input_size, row.input_size)
        out.append(Config(fresh, path, shape, inject_delay_s=(delays or {}).get(row.key, 0.0)))
    return out


def _run(rows: list[tuple[Row, Path]], settings: Settings, delays: dict[tuple, float] | None) -> dict[str, Any]:
    m = measure(_configs(rows, delays), settings, log=lambda _: None, show_progress=False)
    ref = m.reference.get("1", {})
    return {
        "rows": {r.key: r for r in m.rows},
        "ref": {"cpu": ref.get("cpu_samples_ms"), "wall": ref.get("samples_ms")},
    }


def _change(a: dict[str, Any], b: dict[str, Any], key: tuple, metric: str, normalised: bool) -> Change | None:
    ra, rb = a["rows"].get(key), b["rows"].get(key)
    if ra is None or rb is None or not ra.ok or not rb.ok:
        return None
    sa = ra.cpu_samples_ms if metric == "cpu" else ra.samples_ms
    sb = rb.cpu_samples_ms if metric == "cpu" else rb.samples_ms
    if normalised:
        return compare_rounds(sa, sb, a["ref"][metric], b["ref"][metric], reps=1000)
    return compare_rounds(sa, sb, reps=1000)


def run_proof(
    *,
    pairs: int,
    models: list[str],
    runtimes: list[str],
    input_size: int,
    settings: Settings,
    slowdown: float,
    threshold: float,
    seed: int = 0,
    log: Any = print,
) -> dict[str, Any]:
    """Run the trials and return the tallies (see the module docstring)."""
    rows: list[tuple[Row, Path]] = []
    for model in models:
        spec = ModelSpec(model, input_size, 1, 100)
        built = build_artifacts(spec, [(RUNTIME_TARGETS[rt], "fp32") for rt in runtimes], cache=cache_dir())
        for rt in runtimes:
            art = built[(RUNTIME_TARGETS[rt], "fp32")]
            if isinstance(art, Exception):
                raise SystemExit(f"cannot build {model} {rt}: {art}")
            rows.append((Row(model, rt, "fp32", 1, 1, input_size, num_classes=100), art.path))
    # Calibrate the injected slowdown on a long run: slowdown x median CPU time per inference.
    calib = _run(
        rows,
        Settings(runs=400, rounds=40, processes=settings.processes, gemm=False, overhead_runs=0, seed=seed + 99),
        None,
    )
    delays = {}
    for key, row in calib["rows"].items():
        if not row.ok:
            raise SystemExit(f"calibration failed for {row.label}: {row.status}")
        delays[key] = slowdown * row.cpu_median_ms / 1e3
        log(
            f"calibration: {row.label}: median cpu {row.cpu_median_ms:.3f} ms, wall {row.latency.median_ms:.3f} ms;"
            f" injected busy wait {delays[key] * 1e3:.3f} ms"
        )
    rng = random.Random(seed)
    tallies: dict[str, dict[str, Any]] = {}
    for metric, normalised, rule in VARIANTS:
        tallies[f"{metric}/{'norm' if normalised else 'raw'}/{rule}"] = {
            "aa": 0,
            "aa_alarms": 0,
            "slow": 0,
            "slow_caught": 0,
            "aa_changes": [],
            "slow_changes": [],
        }
    start = time.perf_counter()
    for i in range(pairs):
        kinds = ["A", "B", "S"]
        rng.shuffle(kinds)
        runs = {}
        for kind in kinds:
            one = Settings(
                runs=settings.runs,
                rounds=settings.rounds,
                processes=settings.processes,
                gemm=False,
                overhead_runs=0,
                seed=seed + i,
            )
            runs[kind] = _run(rows, one, delays if kind == "S" else None)
        for metric, normalised, rule in VARIANTS:
            t = tallies[f"{metric}/{'norm' if normalised else 'raw'}/{rule}"]
            for key in delays:
                aa = _change(runs["A"], runs["B"], key, metric, normalised)
                sl = _change(runs["A"], runs["S"], key, metric, normalised)
                if aa is not None:
                    t["aa"] += 1
                    t["aa_alarms"] += _decide(aa, threshold, rule)
                    t["aa_changes"].append(round(aa.percent, 3))
                if sl is not None:
                    t["slow"] += 1
                    t["slow_caught"] += _decide(sl, threshold, rule)
                    t["slow_changes"].append(round(sl.percent, 3))
        detail = []
        for key in delays:
            aa = _change(runs["A"], runs["B"], key, "cpu", True)
            sl = _change(runs["A"], runs["S"], key, "cpu", True)
            if aa is not None and sl is not None:
                detail.append(
                    f"{key[0]} {key[1]}: A/A {aa.percent:+.1f}% (p={aa.p_slower:.2g}), "
                    f"slow {sl.percent:+.1f}% (p={sl.p_slower:.2g})"
                )
        gate = tallies[next(iter(tallies))]
        log("  " + "; ".join(detail))
        log(
            f"trial {i + 1}/{pairs} ({time.perf_counter() - start:.0f} s): gate false alarms {gate['aa_alarms']}/"
            f"{gate['aa']}, slowdowns caught {gate['slow_caught']}/{gate['slow']}"
        )
    summary = {}
    for name, t in tallies.items():
        aa, sl = np.array(t["aa_changes"]), np.array(t["slow_changes"])
        summary[name] = {
            "aa_comparisons": t["aa"],
            "false_alarms": t["aa_alarms"],
            "false_alarm_rate": t["aa_alarms"] / max(t["aa"], 1),
            "slowdown_comparisons": t["slow"],
            "caught": t["slow_caught"],
            "detection_rate": t["slow_caught"] / max(t["slow"], 1),
            "aa_change_percent": _spread(aa),
            "slowdown_change_percent": _spread(sl),
        }
    return {
        "settings": {
            "pairs": pairs,
            "models": models,
            "runtimes": runtimes,
            "input_size": input_size,
            "rounds": settings.rounds,
            "block_runs": settings.block_runs,
            "slowdown": slowdown,
            "threshold": threshold,
            "alpha": DEFAULT_ALPHA,
            "seed": seed,
            "delays_ms": {" ".join(map(str, k)): v * 1e3 for k, v in delays.items()},
        },
        "environment": collect_environment(),
        "wall_s": round(time.perf_counter() - start, 1),
        "results": summary,
    }


def _spread(x: np.ndarray) -> dict[str, float] | None:
    if x.size == 0:
        return None
    p1, p5, p50, p95, p99 = np.percentile(x, [1, 5, 50, 95, 99])
    return {
        "sd": float(x.std()),
        "p1": float(p1),
        "p5": float(p5),
        "median": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(x.max()),
        "min": float(x.min()),
    }
