"""``hsnet bench --ops``: onnxruntime's own per-operator profile mapped to operator kinds, on a network that has
one layer of every kind; the classification rule on its own; and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from benchmarks.ops import KINDS, classify
from hsnet.cli import main
from tests.conftest import export_onnx


class _Attn(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.gate = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(x.mean((2, 3)).unsqueeze(1)).squeeze(1).sigmoid()
        return x * w[:, :, None, None]


class EveryKind(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # dense
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise
        self.gwc = nn.Conv2d(16, 16, 3, padding=1, groups=4)  # grouped
        self.pw = nn.Conv2d(32, 24, 1)  # pointwise, after a concat (layout)
        self.attn = _Attn(24)  # attention
        self.fc = nn.Linear(24, 10)  # linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.pw(torch.cat([self.dw(x), self.gwc(x)], 1))
        return self.fc(self.attn(x).mean((2, 3)))


def test_classify_by_shapes_and_scopes() -> None:
    assert classify("Conv", "/pw/Conv", [1, 32, 8, 8], [24, 32, 1, 1]) == "pointwise"
    assert classify("FusedConv", "/stem/Conv", [1, 3, 8, 8], [16, 3, 3, 3]) == "dense"
    assert classify("Conv", "/dw/Conv_output_0_nchwc", [1, 16, 8, 8], [16, 1, 3, 3]) == "depthwise"
    assert classify("Conv", "/gwc/Conv", [1, 16, 8, 8], [16, 4, 3, 3]) == "grouped"
    assert classify("Gemm", "/fc/Gemm", [1, 24], [10, 24]) == "linear"
    assert classify("Conv", "/stages/0/attn/gate/Conv", [1, 1, 24], [1, 1, 3]) == "attention"
    assert classify("ReorderOutput", "ReorderOutput_token_3", None, None) == "layout"
    assert classify("Concat", "/Concat", None, None) == "layout"
    assert classify("Relu", "/Relu", None, None) == "other"


def test_bench_ops_breaks_a_row_down_by_kind(tmp_path: Path) -> None:
    path = export_onnx(EveryKind().eval(), tmp_path / "everykind_fp32.onnx", size=16)
    result = CliRunner().invoke(main, ["bench", "--artifact", str(path), "--runs", "16", "--rounds", "4",
                                       "--ops", "--ops-layers", "--ops-plot", str(tmp_path / "ops.png"),
                                       "--json", str(tmp_path / "r.json")], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "where the time goes (onnxruntime profiler" in result.stdout and "node times sum to" in result.stdout
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    ops = row["ops"]
    assert ops["available"] and set(ops["kinds"]) <= set(KINDS)
    for kind in ("dense", "depthwise", "grouped", "pointwise", "linear", "attention", "layout"):
        assert kind in ops["kinds"], (kind, ops["kinds"])
    assert abs(sum(k["time_share"] for k in ops["kinds"].values()) - 1) < 1e-9
    # MACs per kind from the graph, by hand: 16x16 outputs per conv channel.
    area = 16 * 16
    want = {"dense": area * 16 * 27, "depthwise": area * 16 * 9, "grouped": area * 16 * 4 * 9,
            "pointwise": area * 24 * 32, "linear": 24 * 10, "attention": 24 * 3}  # fmt: skip
    assert {k: ops["kinds"][k]["macs"] for k in want} == want
    assert ops["sum_ms"] > 0 and ops["median_ms"] == row["latency"]["median_ms"] and ops["layers"]
    assert {layer["kind"] for layer in ops["layers"]} == set(ops["kinds"])
    assert (tmp_path / "ops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_int8_convolutions_take_the_kind_of_their_layer_in_the_graph(tmp_path: Path) -> None:
    # onnxruntime runs int8 QDQ convolutions as QLinearConv on an NHWC input with prepacked weights: the profile's
    # shapes cannot say the kind, the deployed graph's layer of the same name can.
    import numpy as np

    from deploy.targets.onnx.int8 import quantize_qdq

    fp32 = export_onnx(EveryKind().eval(), tmp_path / "everykind_fp32.onnx", size=16)
    int8 = tmp_path / "everykind_int8.onnx"
    quantize_qdq(fp32, int8, np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32), batch=1)
    args = ["bench", "--artifact", str(int8), "--runs", "16", "--rounds", "4", "--ops", "--ops-layers", "--json",
            str(tmp_path / "r.json")]  # fmt: skip
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    convs = {layer["name"]: layer["kind"] for layer in row["ops"]["layers"] if layer["op"] == "QLinearConv"}
    assert len(convs) >= 4 and "other" not in convs.values(), convs
    assert {"dense", "depthwise", "grouped", "pointwise"} <= set(convs.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "hsnet", "--runtimes", "tflite", "--ops"], "--ops: no selected runtime has a per-operator "
         "profiler (tflite); onnxruntime has"),
        (["--ops-plot", "x.png"], "--ops-layers and --ops-plot need --ops"),
        (["--ops", "--metric", "instructions"], "does not combine with --metric instructions"),
    ],
)  # fmt: skip
def test_ops_refusals(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.output
    assert list(tmp_path.iterdir()) == []
