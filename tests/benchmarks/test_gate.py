"""The gate's verdicts on synthetic sample sets (known truth); real measured runs are in test_rounds.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.errors import BaselineError
from benchmarks.gate import compare_results, parse_threshold, select_baseline
from benchmarks.schema import BenchResult, Row, save_result
from hsnet.cli import main
from hsnet.errors import EXIT_CHECK_FAILED, EXIT_INCONCLUSIVE
from hsnet.toolbox.machine import cpu_flags, cpu_model

ROUNDS, BLOCK = 20, 5


def synthetic_run(
    seed: int,
    *,
    factor: float = 1.0,
    machine: float = 1.0,
    size: int = 1000,
    parity: dict | None = None,
    status: str = "ok",
    input_size: int = 32,
) -> BenchResult:
    """One run: a model of 10 ms and a reference of 8 ms, both scaled per round by the machine's (drifting) speed,
    with 3 % log-normal noise per call. ``factor`` is a real change of the model; ``machine`` a slower machine."""
    rng = np.random.default_rng(seed)
    drift = machine * rng.uniform(1.0, 1.3, ROUNDS)
    model = [list(10 * factor * d * rng.lognormal(0, 0.03, BLOCK)) for d in drift]
    ref = [list(8 * d * rng.lognormal(0, 0.03, BLOCK)) for d in drift]
    row = Row("hsnet", "onnxruntime", "fp32", 1, 1, input_size, status=status, artifact_bytes=size, parity=parity)
    if status == "ok":
        row.set_samples([[t / 1e3 for t in b] for b in model], [[t / 1e3 for t in b] for b in model])
    reference = {"1": {"samples_ms": ref, "cpu_samples_ms": ref}}
    return BenchResult(rows=[row], reference=reference)


def verdict(old: BenchResult, new: BenchResult, **kw) -> str:
    return compare_results(old, new, threshold=0.05, **kw).rows[0].verdict


def test_aa_synthetic_false_alarms_are_rare() -> None:
    alarms = sum(verdict(synthetic_run(2 * i), synthetic_run(2 * i + 1)) != "pass" for i in range(200))
    assert alarms <= 2


def test_slowdowns_and_speedups() -> None:
    base = synthetic_run(0)
    assert verdict(base, synthetic_run(1, factor=1.10)) == "regression"
    assert verdict(base, synthetic_run(1, factor=1.03)) == "pass"  # real but under the threshold
    assert verdict(base, synthetic_run(1, factor=0.85)) == "faster"
    report = compare_results(base, synthetic_run(1, factor=1.10), threshold=0.05)
    change = report.rows[0].change
    assert change is not None and change.ci95[0] < 1.10 < change.ci95[1]
    assert not report.passed and report.to_dict()["rows"][0]["verdict"] == "regression"


def test_slower_machine_is_not_a_regression_thanks_to_the_reference() -> None:
    base, slow_machine = synthetic_run(0), synthetic_run(1, machine=1.4)
    assert verdict(base, slow_machine) == "pass"
    assert verdict(base, slow_machine, normalise=False) == "regression"


def test_size_parity_and_status() -> None:
    base = synthetic_run(0, parity={"max_rel_error": 1e-6, "top1_agreement": 1.0})
    assert verdict(base, synthetic_run(1, size=1100)) == "regression"
    worse = synthetic_run(1, parity={"max_rel_error": 3e-4, "top1_agreement": 1.0})
    report = compare_results(base, worse)
    assert report.rows[0].verdict == "regression" and "parity" in report.rows[0].reasons[0]
    assert verdict(base, synthetic_run(1, parity={"max_rel_error": 2e-6, "top1_agreement": 1.0})) == "pass"
    assert verdict(base, synthetic_run(1, status="failed: load: boom")) == "failed"
    assert verdict(base, synthetic_run(1, status="skipped: install hsnet[tflite]")) == "skipped"
    assert verdict(synthetic_run(0, status="failed: x"), synthetic_run(1, status="failed: x")) == "n/a"


def test_new_and_missing_rows() -> None:
    base, new = synthetic_run(0), synthetic_run(1)
    new.rows.append(Row("ghostnet_100", "onnxruntime", "fp32", 1, 1, 32))
    base.rows.append(Row("mobilenetv2_100", "onnxruntime", "fp32", 1, 1, 32))
    report = compare_results(base, new)
    assert sorted(r.verdict for r in report.rows) == ["missing", "new", "pass"]
    assert report.passed


def test_incompatible_results() -> None:
    with pytest.raises(BaselineError, match="measured at input size 32, this run at 64"):
        compare_results(synthetic_run(0), synthetic_run(1, input_size=64))
    no_ref = synthetic_run(1)
    no_ref.reference = {}
    with pytest.raises(BaselineError, match="no reference workload samples"):
        compare_results(synthetic_run(0), no_ref)
    with pytest.raises(BaselineError, match="unknown gate metric"):
        compare_results(synthetic_run(0), synthetic_run(1), metric="energy")


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("5", 0.05), ("0.05", 0.05), ("12.5 %", 0.125), (0.1, 0.1)])
def test_parse_threshold(text, value) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "-5%", "0", "2000%"])
def test_parse_threshold_rejects(text) -> None:
    with pytest.raises(BaselineError):
        parse_threshold(text)


XEON = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx2", "avx512f", "fma"]}
EPYC = {"cpu": "AMD EPYC 7B13", "cpu_flags": ["avx2", "fma", "sse4a"]}


def on(result: BenchResult, environment: dict, created: str = "2026-12-01T00:00:00Z") -> BenchResult:
    result.environment, result.created = dict(environment), created
    return result


def test_another_cpu_model_makes_latency_inconclusive_but_size_still_decides() -> None:
    report = compare_results(on(synthetic_run(0), XEON), on(synthetic_run(1, factor=0.7), EPYC), threshold=0.05)
    assert report.rows[0].verdict == "inconclusive" and report.outcome == "inconclusive" and report.passed
    assert report.inconclusive == "the baseline was measured on Intel(R) Xeon(R) Processor, this run on AMD EPYC 7B13"
    assert report.to_dict()["outcome"] == "inconclusive"
    bigger = compare_results(on(synthetic_run(0), XEON), on(synthetic_run(1, size=1100), EPYC), threshold=0.05)
    assert bigger.rows[0].verdict == "regression" and bigger.outcome == "fail"
    # Same model name, other ISA (a hypervisor that hides AVX-512): also not comparable.
    masked = {"cpu": XEON["cpu"], "cpu_flags": ["avx2", "fma"]}
    flags = compare_results(on(synthetic_run(0), XEON), on(synthetic_run(1), masked), threshold=0.05)
    assert flags.outcome == "inconclusive" and "avx512f" in (flags.inconclusive or "")
    same = compare_results(on(synthetic_run(0), XEON), on(synthetic_run(1), XEON), threshold=0.05)
    assert same.outcome == "pass" and same.inconclusive is None


def test_select_baseline_picks_this_cpu_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = {"cpu": cpu_model(), "cpu_flags": cpu_flags()}
    save_result(on(synthetic_run(0), EPYC, "2026-12-02T00:00:00Z"), tmp_path / "amd-epyc.json")
    save_result(on(synthetic_run(1), here, "2026-11-01T00:00:00Z"), tmp_path / "this-cpu-old.json")
    save_result(on(synthetic_run(2), here, "2026-11-05T00:00:00Z"), tmp_path / "this-cpu.json")
    (tmp_path / "notes.json").write_text("not json")
    assert select_baseline(tmp_path) == tmp_path / "this-cpu.json"  # this CPU's newest, not the newest overall
    (tmp_path / "this-cpu.json").unlink()
    (tmp_path / "this-cpu-old.json").unlink()
    assert select_baseline(tmp_path) == tmp_path / "amd-epyc.json"  # none matches: the gate will say inconclusive
    assert select_baseline(tmp_path / "amd-epyc.json") == tmp_path / "amd-epyc.json"
    with pytest.raises(BaselineError, match="no such file or folder"):
        select_baseline(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BaselineError, match=r"holds no result files \(\*\.json\)"):
        select_baseline(empty)


def test_compare_exits_4_when_inconclusive_and_1_on_a_size_regression(tmp_path: Path) -> None:
    save_result(on(synthetic_run(0), XEON), tmp_path / "xeon.json")
    save_result(on(synthetic_run(1, factor=0.7), EPYC), tmp_path / "epyc.json")
    save_result(on(synthetic_run(1, size=1100), EPYC), tmp_path / "epyc-big.json")
    run = CliRunner().invoke(main, ["bench", "compare", str(tmp_path / "xeon.json"), str(tmp_path / "epyc.json"),
                                    "--json", str(tmp_path / "verdicts.json")])  # fmt: skip
    assert run.exit_code == EXIT_INCONCLUSIVE, run.output
    assert "INCONCLUSIVE" in run.stdout and "AMD EPYC 7B13" in run.stdout
    assert json.loads((tmp_path / "verdicts.json").read_text())["outcome"] == "inconclusive"
    big = CliRunner().invoke(main, ["bench", "compare", str(tmp_path / "xeon.json"), str(tmp_path / "epyc-big.json")])
    assert big.exit_code == EXIT_CHECK_FAILED and "FAIL" in big.stdout


def test_a_noisy_row_whose_interval_holds_the_threshold_is_inconclusive() -> None:
    def run(seed: int, factor: float, noise: float) -> BenchResult:
        rng = np.random.default_rng(seed)
        row = Row("hsnet", "onnxruntime", "fp32", 1, 1, 32, artifact_bytes=1000)
        model = [list(10e-3 * factor * rng.lognormal(0, noise, BLOCK)) for _ in range(ROUNDS)]
        row.set_samples(model, model)
        ref = [list(8 * rng.lognormal(0, 0.01, BLOCK)) for _ in range(ROUNDS)]
        return BenchResult(rows=[row], reference={"1": {"samples_ms": ref, "cpu_samples_ms": ref}})

    noisy = compare_results(run(0, 1.0, 0.01), run(1, 1.05, 0.6), threshold=0.05)
    assert noisy.rows[0].verdict == "inconclusive" and noisy.outcome == "inconclusive", noisy.rows[0]
    assert "noisy" in noisy.rows[0].reasons[-1] and noisy.inconclusive is None
    quiet = compare_results(run(0, 1.0, 0.01), run(1, 1.3, 0.01), threshold=0.05)
    assert quiet.rows[0].verdict == "regression"  # a clear slowdown on quiet samples still fails
    far = compare_results(run(0, 1.0, 0.01), run(1, 3.0, 0.3), threshold=0.05)
    assert far.rows[0].verdict == "regression"  # noisy, but its interval lies wholly above the threshold


def _counted(instructions: float, sha: str, cpu: str) -> BenchResult:
    row = Row("hsnet", "onnxruntime", "int8", 1, 1, 96, instructions=instructions, artifact_sha256=sha,
              device="qemu:cortex-a76", device_info={"emulated": "qemu-aarch64 -cpu cortex-a76"})  # fmt: skip
    return BenchResult(rows=[row], environment={"cpu": cpu}, settings={"metric": "instructions",
                       "request": {"remote": ["qemu:cortex-a76"]}})  # fmt: skip


def test_emulated_counts_gate_on_the_threshold_alone_whatever_the_host() -> None:
    base = _counted(1e6, "a" * 64, "Intel Xeon")

    def outcome(new: BenchResult) -> str:
        return compare_results(base, new, threshold=0.01, metric="instructions").outcome

    assert outcome(_counted(1.005e6, "a" * 64, "AMD EPYC")) == "pass"
    assert outcome(_counted(1.02e6, "a" * 64, "AMD EPYC")) == "fail"
    # Another host built another artifact (ONNX int8's filling is decided on the host's CPU): no verdict on the commit.
    other = compare_results(base, _counted(1.02e6, "b" * 64, "AMD EPYC"), threshold=0.01, metric="instructions")
    assert other.outcome == "inconclusive" and "built differently here" in other.rows[0].reasons[-1]
    same_host = compare_results(base, _counted(1.02e6, "b" * 64, "Intel Xeon"), threshold=0.01, metric="instructions")
    assert same_host.outcome == "fail"  # built differently on the same CPU model: the code changed it


def test_select_baseline_for_devices_picks_the_same_devices(tmp_path: Path) -> None:
    a76 = _counted(1e6, "a" * 64, "x")
    a53 = _counted(2e6, "a" * 64, "x")
    a53.settings["request"]["remote"] = ["qemu:cortex-a53"]
    save_result(a76, tmp_path / "a76.json")
    save_result(a53, tmp_path / "a53.json")
    assert select_baseline(tmp_path, remote=["qemu:cortex-a53"]).name == "a53.json"
    assert select_baseline(tmp_path, remote=["qemu:cortex-a76"]).name == "a76.json"
