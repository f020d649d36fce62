"""Bisect's mapping from exported node names to modules, and a clean graph bisects to nothing."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from deploy.bisect import bisect_export, bisect_onnx, module_of_node
from deploy.images import parity_images
from deploy.onnx_export import export_onnx
from deploy.prepare import prepare_model
from deploy.targets.base import ExportContext, ExportOptions
from deploy.targets.onnx import OnnxExporter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = {"stem", "stem.conv", "stages", "stages.0", "stages.0.0", "stages.0.0.expand", "stages.0.0.expand.gwc",
         "stages.0.0.expand.gwc.conv", "stages.0.0.shortcut", "stages.0.0.shortcut.1", "stages.0.0.shortcut.1.conv",
         "stages.0.0.attn", "classifier"}  # fmt: skip


def test_module_of_node() -> None:
    assert module_of_node("/stages/stages.0/stages.0.0/expand/gwc/conv/Conv", NAMES) == "stages.0.0.expand.gwc.conv"
    assert module_of_node("/stages/stages.0/stages.0.0/shortcut/shortcut.1/conv/Conv", NAMES) == (
        "stages.0.0.shortcut.1.conv"
    )
    assert module_of_node("/stages/stages.0/stages.0.0/attn/Transpose_1", NAMES) == "stages.0.0.attn"
    assert module_of_node("/stages/stages.0/stages.0.0/Add", NAMES) == "stages.0.0"
    assert module_of_node("/classifier/Gemm", NAMES) == "classifier"
    assert module_of_node("/Flatten", NAMES) == ""
    assert module_of_node("Identity_12", NAMES) == ""


def test_a_faithful_graph_has_no_divergence(hsnet_onnx) -> None:
    prepared = prepare_model("hsnet", num_classes=10, input_size=32, seed=0)  # the weights of hsnet_export
    x, _, _ = parity_images(4, 32, mean=prepared.mean, std=prepared.std)
    assert bisect_onnx(hsnet_onnx, prepared.model, x) is None


class _OneWrongWeight(OnnxExporter):
    """A converter with a bug: it scales one filter of one weight by -2 (if that weight is in the graph)."""

    suffix = ".onnx"

    def export(self, ctx: ExportContext) -> Path:
        model = onnx.load(ctx.onnx_path)
        for init in model.graph.initializer:
            if init.name.endswith("features.3.expand3x3.conv.weight"):  # "model." prefix in a truncated export
                w = numpy_helper.to_array(init).copy()
                w[0] *= -2
                init.CopyFrom(numpy_helper.from_array(w, init.name))
        out = ctx.work_dir / self.artifact_name(ctx)
        onnx.save(model, out)
        return out


def test_pipeline_bisect_through_truncated_conversions(tmp_path) -> None:
    """Converting model prefixes with the faulty converter finds the layer it breaks."""
    prepared = prepare_model("squeezenet1_1", num_classes=10, input_size=32)
    x, _, _ = parity_images(4, 32, mean=prepared.mean, std=prepared.std)
    export_onnx(prepared.model, tmp_path / "full.onnx", input_shape=(1, 3, 32, 32))
    ctx = ExportContext("squeezenet1_1", prepared.model, tmp_path / "full.onnx", list(prepared.labels),
                        prepared.mean, prepared.std, ExportOptions(input_size=32), tmp_path)  # fmt: skip
    found = bisect_export(_OneWrongWeight(), ctx, x, precision="fp32")
    assert found is not None and found.module == "features.3.expand3x3.conv"
    assert found.node == "/features/features.3/expand3x3/conv/Conv" and found.op_type == "Conv"
    assert found.max_rel_error > 0.01 and found.compared <= 9  # a binary search over ~100 modules
