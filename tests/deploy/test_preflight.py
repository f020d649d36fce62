"""Pre-flight findings: rewrites listed, trouble found, unsupported operations stop the export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deploy.onnx_export import export_onnx
from deploy.preflight import scan_graph
from deploy.targets.base import ExportContext, Exporter, ExportOptions
from hsnet.layers import ECA, ChannelShuffle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _NoGather(Exporter):
    """The smallest real exporter: one that cannot run Gather and refuses a dynamic batch."""

    name = "nogather"
    suffix = ".bin"
    extra = "onnx"
    unsupported_ops = frozenset({"Gather"})
    supports_dynamic_batch = False

    def check_available(self, options: ExportOptions) -> None:
        pass

    def export(self, ctx: ExportContext) -> Path:
        raise AssertionError("never reached in these tests")


def _ctx(path: Path, rewrites: list[str]) -> ExportContext:
    return ExportContext("net", nn.Identity(), path, ["a"], (0.5,) * 3, (0.5,) * 3, ExportOptions(), path.parent,
                         rewrites=rewrites)  # fmt: skip


def test_findings_of_an_unrewritten_graph(tmp_path) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), ChannelShuffle(2), ECA(8)).eval()
    export_onnx(net, tmp_path / "raw.onnx", input_shape=(1, 3, 8, 8), dynamic_batch=True)
    scan = scan_graph(tmp_path / "raw.onnx")
    assert scan.dynamic_batch and scan.conv1d and scan.high_rank
    findings = _NoGather().preflight(_ctx(tmp_path / "raw.onnx", []))
    messages = [(f.severity, f.message) for f in findings]
    assert ("error", "dynamic batch dimension") in messages
    assert any(s == "warning" and "rank-5" in m for s, m in messages)
    assert any(s == "warning" and "1-D convolution" in m for s, m in messages)


def test_unsupported_operation_and_rewrites_are_reported(tmp_path) -> None:
    from deploy.rewrites import apply_export_rewrites

    net = nn.Sequential(nn.Conv2d(3, 8, 1), ChannelShuffle(2)).eval()
    applied = apply_export_rewrites(net, (1, 3, 8, 8))
    export_onnx(net, tmp_path / "g.onnx", input_shape=(1, 3, 8, 8))
    findings = _NoGather().preflight(_ctx(tmp_path / "g.onnx", [f"{a.rewrite} at {a.module}" for a in applied]))
    assert [(f.severity, f.message) for f in findings] == [
        ("info", "rewrite applied: channel_shuffle_gather at 1 modules (1)"),
        ("error", "operation Gather (1 nodes) is not supported by nogather"),
    ]
    assert torch.equal(net[1].perm, torch.tensor([0, 4, 1, 5, 2, 6, 3, 7]))
