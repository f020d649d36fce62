"""Instruction counts under valgrind (the deterministic metric)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.gate import compare_results
from benchmarks.instructions import count_instructions
from benchmarks.rounds import Config
from benchmarks.schema import BenchResult, Row

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
]

SLOW_TWIN_MACS = 11_059_520  # tests/benchmarks/conftest.py: tiny_cnn(extra_layers=4) at 32x32


def test_count_per_inference_and_gate(artifacts: dict[str, Path]) -> None:
    row = Row("tinyslow", "onnxruntime", "fp32", 1, 1, 32)
    count = count_instructions(Config(row, artifacts["slow"]), n1=1, n2=2)
    # valgrind's CPU has at most 8-wide float32 FMA (AVX2, no AVX-512): at least MACs / 8 instructions.
    assert SLOW_TWIN_MACS / 8 < count < SLOW_TWIN_MACS * 20
    # Deterministic counts need no statistics: the threshold alone decides.
    old, new = Row(**{**row.__dict__, "instructions": count}), Row(**{**row.__dict__, "instructions": count * 1.08})
    report = compare_results(BenchResult([old]), BenchResult([new]), threshold=0.05, metric="instructions")
    assert report.rows[0].verdict == "regression" and report.rows[0].reasons == ["instructions +8.0 %"]
    assert compare_results(BenchResult([old]), BenchResult([old]), threshold=0.05, metric="instructions").passed
