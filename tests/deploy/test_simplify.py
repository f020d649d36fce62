"""onnxsim: node counts recorded, and a real onnxsim failure reported (never swallowed) with the graph kept."""

from __future__ import annotations

import onnx
import pytest

from deploy.simplify import simplify_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_simplify_records_node_counts(hsnet_export) -> None:
    s = hsnet_export.simplify
    assert s.ok and s.error is None and s.nodes_before >= s.nodes_after > 100
    assert s.describe().startswith(f"onnxsim {s.version}: {s.nodes_before} -> {s.nodes_after} nodes")


def test_onnxsim_failure_is_reported_and_the_graph_kept(hsnet_onnx, tmp_path) -> None:
    """A graph whose nodes are out of topological order is valid data that onnxsim refuses (RuntimeError)."""
    model = onnx.load(hsnet_onnx)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    src = tmp_path / "reversed.onnx"
    onnx.save(model, src)
    dst = tmp_path / "out.onnx"
    result = simplify_onnx(src, dst)
    assert not result.ok
    assert result.error.startswith("RuntimeError: Nodes in a graph must be topologically sorted")
    assert result.nodes_before == result.nodes_after == len(nodes)
    assert dst.read_bytes() == src.read_bytes()  # the pipeline continues with the unsimplified graph
    line = result.describe()
    assert "FAILED (RuntimeError: Nodes in a graph must be topologically sorted" in line
    assert line.endswith(f"continuing with the unsimplified graph ({len(nodes)} nodes)")
    assert result.to_dict()["ok"] is False  # what the manifest records under onnx.onnxsim
