"""``hsnet bench`` and ``hsnet bench compare`` end to end: exit codes 0/1/2, files written, one-line errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hsnet.cli import main

QUICK = ["--runs", "32", "--rounds", "8", "--processes", "2", "--timeout", "120"]


def bench(*args: str):
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "hsnet,nosuchnet"], "Error: unknown model 'nosuchnet'; "),
        (["--models", "hsnett"], "Error: unknown model 'hsnett'; did you mean hsnet"),
        (["--runtimes", "tvm"], "Error: unknown runtime 'tvm'; valid: torch, onnxruntime, tflite, coreml"),
        (["--precision", "int4"], "Error: unknown precision 'int4'; valid: fp32, fp16, int8"),
        (["--device", "cuda"], "Error: unknown device 'cuda'; valid: cpu"),
        (["--threads", "0"], "Error: --threads takes comma-separated positive integers"),
        (["--runs", "20", "--min-time", "1"], "Error: give --runs or --min-time, not both"),
        (["--fail-on-regression", "5%"], "Error: --fail-on-regression needs --baseline FILE"),
        (["--baseline", "b.json", "--rounds", "4"], "Error: the gate's test needs --rounds >= 8 (got 4)"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = bench(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_bad_baselines_exit_2_before_measuring(tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text('{"kind": "hsnet-bench", "schema_version": 1, "rows": [')
    (tmp_path / "v9.json").write_text('{"kind": "hsnet-bench", "schema_version": 9, "rows": []}')
    for name, message in (("cut.json", "is not valid JSON"), ("v9.json", "schema version 9"), ("no.json", "no such")):
        result = bench("--models", "hsnet", "--baseline", str(tmp_path / name))
        assert result.exit_code == 2 and message in result.stderr
        result = CliRunner().invoke(main, ["bench", "compare", str(tmp_path / name), str(tmp_path / name)])
        assert result.exit_code == 2 and message in result.stderr


@pytest.mark.slow
def test_measure_write_and_gate(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    """Measure given artifacts; write JSON, Markdown and plot; then gate a real slowdown (extra layers)."""
    out = tmp_path / "out"
    base = bench("--artifact", str(artifacts["small"]), *QUICK, "--json", str(out / "base.json"),
                 "--markdown", str(out / "base.md"), "--plot", str(out / "base.png"))  # fmt: skip
    assert base.exit_code == 0, base.output
    assert sorted(p.name for p in out.iterdir()) == ["base.json", "base.md", "base.png"]  # nothing half-written
    data = json.loads((out / "base.json").read_text())
    (row,) = data["rows"]
    assert (row["model"], row["runtime"], row["status"], row["input_size"]) == ("tiny", "onnxruntime", "ok", 32)
    assert len(row["samples_ms"]) == 8 and data["reference"]["1"]["samples_ms"]
    assert "| tiny | onnxruntime | fp32 |" in (out / "base.md").read_text()
    assert (out / "base.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "harness overhead per timed call" in base.stdout and "median ms" in base.stdout

    # The twin with 4 extra conv layers, under the same file name so that the rows match.
    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    twin = shutil.copy(artifacts["slow"], twin_dir / artifacts["small"].name)
    gated = bench("--artifact", str(twin), *QUICK, "--json", str(out / "slow.json"),
                  "--baseline", str(out / "base.json"), "--fail-on-regression", "5%")  # fmt: skip
    assert gated.exit_code == 1, gated.output
    assert "REGRESSION" in gated.stdout and "FAIL: 1 row(s)" in gated.stdout

    compare = CliRunner().invoke(main, ["bench", "compare", str(out / "base.json"), str(out / "slow.json"),
                                        "--json", str(out / "verdicts.json")])  # fmt: skip
    assert compare.exit_code == 1
    verdict = json.loads((out / "verdicts.json").read_text())["rows"][0]
    assert verdict["verdict"] == "regression" and verdict["change_percent"] > 30
    assert any(r.startswith("cpu time +") for r in verdict["reasons"])
    same = CliRunner().invoke(main, ["bench", "compare", str(out / "base.json"), str(out / "base.json")])
    # A run against itself never fails; with these few samples a noisy row may leave it undecided (exit 4).
    assert (same.exit_code, "PASS" in same.stdout) in ((0, True), (4, False)), same.output

    other_size = bench("--models", "hsnet", "--input-size", "64", "--baseline", str(out / "base.json"))
    assert other_size.exit_code == 2 and "incompatible baseline: it was measured at input size 32" in other_size.stderr


def test_unusable_artifacts_exit_2_before_measuring(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    import onnx

    (tmp_path / "empty_fp32.tflite").write_bytes(b"")
    model = onnx.load(str(artifacts["small"]))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/hostname"
    onnx.save(model, str(tmp_path / "outside_fp32.onnx"))
    cases = (
        (artifacts["corrupt"], "is not a readable ONNX model"),
        (tmp_path / "empty_fp32.tflite", "not a valid TFLite flatbuffer"),
        (tmp_path / "outside_fp32.onnx", "keeps its data at '/etc/hostname', outside the model's folder"),
    )
    for path, message in cases:
        result = bench("--artifact", str(path), *QUICK, "--json", str(tmp_path / "r.json"))
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: artifact ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "r.json").exists()


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML can run here")
def test_a_run_that_measures_no_row_exits_3(tmp_path: Path) -> None:
    package = tmp_path / "mine_fp32.mlpackage"  # CoreML predicts on macOS only: its row is skipped here
    package.mkdir()
    result = bench("--artifact", str(package), *QUICK, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 3, result.output
    assert "Error: no configuration was measured (1 row(s): skipped: CoreML prediction needs macOS)" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["status"].startswith("skipped")  # still written


def test_a_noisy_row_is_flagged() -> None:
    from benchmarks.report import noise_lines
    from benchmarks.schema import NOISY_CI, BenchResult, Row

    rng = np.random.default_rng(0)
    quiet, noisy = Row("a", "onnxruntime", "fp32", 1, 1, 32), Row("b", "onnxruntime", "fp32", 1, 1, 32)
    quiet.set_samples([list(1e-3 * rng.lognormal(0, 0.01, 10)) for _ in range(8)])
    noisy.set_samples([list(1e-3 * rng.lognormal(0, 0.8, 10)) for _ in range(8)])
    assert quiet.latency.ci_halfwidth_rel < NOISY_CI < noisy.latency.ci_halfwidth_rel
    env = {"loadavg": [4.6, 4.0, 3.0], "usable_cores": 2}
    assert noise_lines(BenchResult(rows=[quiet], environment={"loadavg": [0.5, 0.5, 0.5], "usable_cores": 2})) == []
    assert noise_lines(BenchResult(rows=[quiet], environment=env)) == [
        "warning: the machine was loaded (load 4.6 on 2 cores at the start)"
    ]
    (line,) = noise_lines(BenchResult(rows=[quiet, noisy], environment=env))
    assert line.startswith("warning: 1 row(s) noisy, 95 % interval wider than ±10 % (load 4.6 on 2 cores at the start)")
    assert "b onnxruntime fp32" in line and "a onnxruntime" not in line
    assert BenchResult(rows=[quiet, noisy]).to_dict()["noisy_rows"] == [noisy.label]
