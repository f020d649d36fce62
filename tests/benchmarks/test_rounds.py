"""Interleaved measurement with real runtimes, and the gate on real runs with a real slowdown (extra layers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.gate import compare_results
from benchmarks.rounds import Config, Settings, measure
from benchmarks.schema import BenchResult, Row

FAST = Settings(runs=24, rounds=6, processes=2, warmup_runs=2, warmup_s=0.0, overhead_runs=200, gemm=False)


def row(runtime: str = "onnxruntime", model: str = "tiny") -> Row:
    return Row(model, runtime, "fp32", 1, 1, 32, macs=1_000_000)


def run(configs: list[Config], settings: Settings = FAST) -> BenchResult:
    m = measure(configs, settings, log=lambda _: None, show_progress=False)
    return BenchResult(rows=m.rows, reference=m.reference, harness=m.harness, gemm=m.gemm)


def test_interleaved_rounds_fill_rows(artifacts: dict[str, Path]) -> None:
    res = run([
        Config(row(), artifacts["small"]),
        Config(row(model="slow"), artifacts["slow"]),
        Config(row(model="broken"), artifacts["corrupt"]),
        Config(Row("x", "onnxruntime", "fp16", 1, 1, 32, status="skipped: not built"), None),
    ])  # fmt: skip
    small, slow, broken, skipped = res.rows
    for r in (small, slow):
        assert r.ok, r.status
        assert len(r.samples_ms) == 6 and all(len(b) == 4 for b in r.samples_ms)  # rounds x (2 processes x 2)
        assert len(r.cpu_samples_ms) == 6 and len(r.switches) == 6
        assert r.latency is not None and r.latency.runs == 24 and r.latency.ci95_low_ms is not None
        assert r.latency.min_ms <= r.latency.median_ms <= r.latency.p90_ms <= r.latency.p99_ms
        assert r.cold_start_ms == pytest.approx(r.load_ms + r.first_inference_ms)
        assert r.peak_rss_mb > 10
        assert r.gmacs_per_s is not None and r.gmacs_per_s > 0
        # One thread really: the process used at most about one core while timed (CPU time / wall time).
        assert r.cpu_util is not None and r.cpu_util < 1.25
    assert broken.status.startswith("failed: load:")
    assert skipped.status == "skipped: not built" and skipped.latency is None
    ref = res.reference["1"]
    assert len(ref["samples_ms"]) == 6 and len(ref["cpu_samples_ms"][0]) == 4
    assert res.harness["overhead_ns"] > 0 and res.harness["overhead_share"] is not None


def test_missing_runtime_row_is_skipped(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    shadow = tmp_path / "onnxruntime"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    m = measure([Config(row(), artifacts["small"])], FAST, env={"PYTHONPATH": str(tmp_path)}, log=lambda _: None,
                show_progress=False)  # fmt: skip
    assert m.rows[0].status == "skipped: onnxruntime is not installed: install hsnet[onnx]"


def test_block_timeout_becomes_a_failed_row_and_the_table_completes(artifacts: dict[str, Path]) -> None:
    # Each timed call busy-waits 50 ms inside the child, so a block cannot finish within the 10 ms deadline on any
    # CPU however fast: the overrun is deterministic, and it happens in the first round.
    settings = Settings(runs=12, rounds=2, processes=1, warmup_runs=1, warmup_s=0.0, block_timeout_s=0.01,
                        overhead_runs=0, gemm=False, reference=False)  # fmt: skip
    slow = Config(row(), artifacts["small"], inject_delay_s=0.05)
    m = measure([slow], settings, log=lambda _: None, show_progress=False)
    assert m.rows[0].status == "failed: timed out after 0.01 s (run) in round 1", m.rows[0].status


@pytest.mark.slow
def test_gate_on_real_runs_catches_extra_layers(artifacts: dict[str, Path]) -> None:
    """The same configuration measured from the tiny net and from its twin with 4 extra conv layers."""
    settings = Settings(runs=60, rounds=10, processes=2, warmup_runs=2, warmup_s=0.0, overhead_runs=0, gemm=False)
    base = run([Config(row(), artifacts["small"])], settings)
    again = run([Config(row(), artifacts["small"])], settings)
    slower = run([Config(row(), artifacts["slow"])], settings)
    verdict = compare_results(base, slower, threshold=0.05).rows[0]
    assert verdict.verdict == "regression" and verdict.change is not None and verdict.change.ratio > 1.3
    # Identical code must pass; a generous threshold keeps this test's own false-alarm odds negligible.
    assert compare_results(base, again, threshold=0.25).rows[0].verdict in ("pass", "faster")
    assert compare_results(slower, base, threshold=0.05).rows[0].verdict == "faster"
