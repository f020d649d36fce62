import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import hsnet
from hsnet.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_models_lists_every_model_with_declared_figures(run):
    result = run("models")
    assert result.exit_code == 0
    for name in hsnet.list_models():
        assert name in result.output
    assert "3.03 M" in result.output  # HSNet's parameters


def test_models_json_and_pattern(run):
    data = json.loads(run("models", "cifar_*", "--json").stdout)
    assert [d["name"] for d in data] == hsnet.list_models("cifar_*")
    assert all(d["params"] == hsnet.model_info(d["name"]).params for d in data)


def test_models_pattern_without_match_is_an_error(run):
    result = run("models", "nothing*")
    assert result.exit_code != 0 and "no model matches 'nothing*'" in result.output


def test_profile_json_is_exact(run):
    result = run("profile", "hsnet", "--input-size", "32", "--num-classes", "10", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["model"] == "hsnet" and data["input_size"] == 32 and data["output_shape"] == [1, 10]
    prof = hsnet.profiling.profile_model(hsnet.create_model("hsnet", num_classes=10), 32)
    assert (data["params"], data["macs"], data["flops"]) == (prof.params, prof.macs, prof.flops)
    assert sum(data["macs_by_kind"].values()) == data["macs"]


def test_profile_table_shows_breakdown_and_context(run):
    out = run("profile", "ghostnet_100", "--input-size", "32", "--layers").output
    for text in (
        "pointwise",
        "depthwise",
        "operator kind",
        "batchnorm",
        "torch ",
        "batch 1",
        "fp32",
        "stem.conv",
    ):
        assert text in out


def test_unknown_model_is_one_line_without_traceback(run):
    result = run("profile", "hsnett")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "unknown model 'hsnett'" in result.output and "did you mean hsnet" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("size", ["0", "abc", "-1"])
def test_bad_input_size_is_rejected(run, size):
    result = run("profile", "hsnet", "--input-size", size)
    assert result.exit_code == 2 and "--input-size" in result.output


def test_model_that_cannot_run_at_a_size_says_so(run):
    result = run("profile", "squeezenet1_0", "--input-size", "8")
    assert result.exit_code == 2
    assert "squeezenet1_0 cannot run on a 8x8 input" in result.output and "tested at 224, 32" in result.output


def test_compare_json(run):
    data = json.loads(run("compare", "hsnet", "ghostnet_100", "--input-size", "32", "--json").stdout)
    assert [d["model"] for d in data] == ["hsnet", "ghostnet_100"]
    assert data[0]["paper"]["params_m"] == 3.00 and data[0]["paper"]["flops"] == 231.87e6
    assert data[0]["pointwise_mac_share"] < data[1]["pointwise_mac_share"]


def test_compare_rejects_bad_name_before_work(run):
    result = run("compare", "hsnet", "nope")
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output and "profiling" not in result.output


def test_real_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "hsnet", "profile", "hsnet", "--input-size", "32", "--json"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] == hsnet.model_info("hsnet").params
    bad = subprocess.run(
        [sys.executable, "-m", "hsnet", "profile", "nope"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert (
        bad.returncode == 2 and bad.stderr.startswith("Error: unknown model 'nope'") and "Traceback" not in bad.stderr
    )
