"""Parameters and MACs counted from ONNX graphs: exact on hand-built graphs, and equal to the profiler."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploy.graph_stats import cross_check, graph_stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _graph() -> onnx.ModelProto:
    """input (1,8,10,10) -> grouped 3x3 conv (groups 2, stride 2, bias) -> GAP -> Flatten -> Gemm -> MatMul."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(16, np.float32), "b")
    b2 = numpy_helper.from_array(np.zeros(16, np.float32), "b2")  # equal values: stored separately here
    g = numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), "g")
    gb = numpy_helper.from_array(np.zeros(5, np.float32), "gb")
    m = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "m")
    shape = numpy_helper.from_array(np.array([1, 16], np.int64), "shape")  # an int constant: not a parameter
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["b"], ["b_alias"]),
        helper.make_node("Add", ["c", "b_alias_4d"], ["c2"]),
        helper.make_node("Unsqueeze", ["b2", "axes"], ["b_alias_4d"]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1),
        helper.make_node("MatMul", ["y", "m"], ["logits"]),
    ]
    axes = numpy_helper.from_array(np.array([0, 2, 3], np.int64), "axes")
    graph = helper.make_graph(
        [nodes[0], nodes[1], nodes[3], nodes[2], *nodes[4:]],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 10, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        initializer=[w, b, b2, g, gb, m, shape, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_counts_of_a_hand_built_graph() -> None:
    model = _graph()
    onnx.checker.check_model(model, full_check=True)
    stats = graph_stats(model)
    conv = 16 * 5 * 5 * (4 * 3 * 3)  # output elements x (in/groups x kernel area)
    gemm = 5 * 16
    matmul = 3 * 5
    assert stats.macs == conv + gemm + matmul
    assert stats.macs_by_op == {"Conv": conv, "Gemm": gemm, "MatMul": matmul}
    assert stats.params == 16 * 4 * 9 + 16 + 16 + 5 * 16 + 5 + 15  # int64 shape/axes excluded
    assert stats.stored_params == stats.params  # no merged initializers in this graph
    assert stats.nodes == 8 and stats.ops["Conv"] == 1 and stats.batch == 1


def test_merged_initializers_are_counted_per_use() -> None:
    """The TorchScript exporter stores equal-valued tensors once; each use is still a parameter."""
    model = _graph()
    for node in model.graph.node:  # the Unsqueeze reads "b" too: one stored tensor, two uses
        if node.op_type == "Unsqueeze":
            node.input[0] = "b"
    kept = [i for i in model.graph.initializer if i.name != "b2"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    stats = graph_stats(model)
    assert stats.params == graph_stats(_graph()).params
    assert stats.stored_params == stats.params - 16


def test_exported_graph_matches_profiler(hsnet_export, hsnet_onnx) -> None:
    cc = hsnet_export.graph["cross_check"]
    assert cc["params_equal"] and cc["macs_equal"], cc
    stats = graph_stats(hsnet_onnx)
    assert stats.params == cc["profiler_params"] == 2_907_908  # HSNet, 10 classes, BN folded
    assert stats.macs_per_image == cc["profiler_macs"] == 6_041_648  # at 32x32


def test_cross_check_reports_disagreement() -> None:
    stats = graph_stats(_graph())
    cc = cross_check(stats, params=stats.params - 1, macs=stats.macs)
    assert not cc["params_equal"] and cc["macs_equal"]
    assert cross_check(stats, params=stats.params - 14, macs=stats.macs, constants=14)["params_equal"]


def test_an_int8_qdq_graph_counts_its_quantized_weights_not_its_scales(hsnet_onnx, tmp_path) -> None:
    from deploy.targets.onnx.int8 import quantize_qdq

    qdq = quantize_qdq(hsnet_onnx, tmp_path / "q.onnx", np.random.default_rng(0).standard_normal((4, 3, 32, 32),
                       dtype=np.float32), batch=1)  # fmt: skip
    fp32, int8 = graph_stats(onnx.load(str(hsnet_onnx))), graph_stats(onnx.load(str(qdq)))
    assert int8.params == fp32.params and int8.macs == fp32.macs
