"""``--tune`` for the ONNX target: each grouped convolution's variants are exact (block-diagonal filling), the
tuned graph is proven equal and measured, the manifest records every choice; targets without a tuner refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploy.targets.onnx.groups import block_diagonal, divisors
from hsnet.cli import main


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_block_diagonal_weights_compute_the_same_convolution(groups: int) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8 * 3, 8 * 5, 3, padding=1, groups=groups).eval()
    x = torch.randn(2, 24, 9, 9)
    for after in divisors(groups):
        w = block_diagonal(conv.weight.detach().numpy(), groups, after)
        merged = torch.nn.functional.conv2d(x, torch.from_numpy(w), conv.bias, padding=1, groups=after)
        assert merged.shape == conv(x).shape
        torch.testing.assert_close(merged, conv(x), rtol=0, atol=2e-6)  # the zeros add exact zeros
        assert w.shape[1] == 24 // after


def test_divisors_and_bad_group_counts() -> None:
    assert divisors(8) == [8, 4, 2, 1] and divisors(6) == [6, 3, 2, 1]
    with pytest.raises(ValueError, match="do not divide"):
        block_diagonal(np.zeros((8, 1, 3, 3), np.float32), 8, 3)


def test_export_tune_records_each_layer_and_proves_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    result = CliRunner().invoke(main, ["deploy", "export", "--model", "hsnet", "--input-size", "32", "--num-classes",
                                       "10", "--tune", "--parity-images", "8", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    tuning = record["tuning"]
    assert tuning["runtime"].startswith("onnxruntime ") and tuning["threads"] == 1
    assert len(tuning["layers"]) == 20  # HSNet's grouped 3x3 convolutions (8 groups each)
    for layer in tuning["layers"]:
        assert set(layer["us"]) == {"8", "4", "2", "1"} and layer["groups_after"] in (1, 2, 4, 8)
        assert layer["gain"] >= 1.0  # a variant is kept only when it was faster
    assert tuning["max_abs"] <= 1e-5 and tuning["ratio"] > 0
    assert record["parity"]["passed"]
    import onnx

    model = onnx.load(str(out / "hsnet_fp32.onnx"))
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node}
    for layer in tuning["layers"]:
        assert groups[layer["name"]] == layer["groups_after"]  # the graph holds what the manifest says


def test_tune_on_a_target_without_a_tuner_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["deploy", "export", "--target", "pt2", "--tune", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert "--tune: target pt2 has no tuner" in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remote", "qemu:cortex-a76"], "--remote measures --tune's variants on a device: give --tune"),
        (["--tune", "--remote", "qemu:cortex-x9"], "cortex-x9"),
        (["--tune", "--remote", "ftp://board"], "ftp://board"),
        (["--ssh-option", "Port=22"], "--ssh-option and --ssh-config need --remote DEVICE"),
        (["--arch", "riscv64"], "riscv64"),
        (
            ["--target", "tflite", "--precision", "int8", "--tune", "--converter", "litert-torch"],
            "converter litert-torch converts the PyTorch module: use --converter onnx2tf",
        ),
    ],
)
def test_bad_tune_site_or_arch_is_one_usage_error_before_any_work(tmp_path: Path, args, message) -> None:
    out = tmp_path / "x"
    result = CliRunner().invoke(main, ["deploy", "export", "--input-size", "32", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output and not out.exists()


def test_int8_tune_fills_each_layer_to_its_own_fastest_group_count(tmp_path: Path) -> None:
    out = tmp_path / "int8"
    result = CliRunner().invoke(main, ["deploy", "export", "--model", "hsnet", "--input-size", "32", "--num-classes",
                                       "10", "--precision", "int8", "--tune", "--parity-images", "8", "--out",
                                       str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = next(a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["precision"] == "int8")
    tuning = record["tuning"]
    assert len(tuning["layers"]) == 20 and all(set(c["us"]) == {"8", "4", "2", "1"} for c in tuning["layers"])
    import onnx

    model = onnx.load(str(out / "hsnet_int8.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node}
    if "bit-identical on 16 images" in meta["int8"]:  # applied: the graph holds each layer's choice
        assert tuning["kept"] == sum(c["groups_after"] != 8 for c in tuning["layers"])
        for layer in tuning["layers"]:
            assert groups[layer["name"]] == layer["groups_after"]
    else:  # not bit-identical on this CPU (no VNNI): the plain QDQ graph, 8 groups everywhere
        assert "not bit-identical here" in meta["int8"] and tuning["kept"] == 0
        assert all(groups[c["name"]] == 8 for c in tuning["layers"])


@pytest.mark.slow
def test_tune_remote_measures_whole_onnx_variants_on_the_emulated_device(emulated, tmp_path: Path) -> None:
    # On the device every variant is a whole graph (each grouped convolution filled to g groups, g = 8, 4, 2, 1),
    # compared by exact instruction counts; the kept one is proven equal here, and the artifact is for aarch64.
    out = tmp_path / "remote"
    result = CliRunner().invoke(main, ["deploy", "export", "--model", "hsnet", "--input-size", "32", "--num-classes",
                                       "10", "--precision", "fp32,int8", "--tune", "--remote", "qemu:cortex-a76",
                                       "--parity-images", "8", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["arch"] == "aarch64" and manifest["options"]["tune_on"] == "qemu:cortex-a76"
    import onnx

    for record in manifest["artifacts"]:
        tuning = record["tuning"]
        assert tuning["where"] == "qemu:cortex-a76 (emulated Cortex-A76)" and tuning["unit"] == "instructions"
        assert set(tuning["variants"]) == {"8", "4", "2", "1"} and tuning["layers_changed"]["1"] == 20
        costs = {int(g): c for g, c in tuning["variants"].items()}
        best = min(costs, key=costs.__getitem__)
        assert tuning["groups_after"] == (best if costs[8] / costs[best] > 1.05 else 8)
        assert tuning["gain"] == pytest.approx(costs[8] / costs[tuning["groups_after"]], rel=1e-3)
        model = onnx.load(str(out / record["file"]))
        grouped = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node
                   if n.op_type == "Conv"]  # fmt: skip
        after = tuning["groups_after"] if record["precision"] == "fp32" or tuning.get("kept") else 8
        assert grouped.count(after) >= 20
        if record["precision"] == "fp32":
            assert tuning["max_abs"] <= 1e-5


def test_tune_on_an_unreachable_device_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "x"
    result = CliRunner().invoke(main, ["deploy", "export", "--input-size", "32", "--precision", "int8", "--tune",
                                       "--remote", "ssh://127.0.0.1:1", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "ssh://127.0.0.1:1: unreachable" in result.stderr and "Traceback" not in result.output
    assert not out.exists()
