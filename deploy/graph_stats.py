"""Parameters and multiply-adds counted from an exported ONNX graph, cross-checked against the profiler.

Counting the graph itself (not the PyTorch model) proves that what ships is what was profiled: a BatchNorm
left unfolded, a duplicated weight or a convolution of the wrong size shows up as a difference.

* **Parameters**: elements of every floating-point initializer (or ``Constant``) a node consumes, counted per
  consuming input slot and followed through ``Identity``. Per use, because the TorchScript exporter merges
  initializers with equal values (e.g. two all-zero biases) into one; integer tensors (shapes, indices, slice
  bounds) and scalars (e.g. the ``Clip`` bounds) are not parameters, except the quantized weights and biases that
  a ``DequantizeLinear`` reads in an int8 (QDQ) graph (its scales and zero points are not).
* **MACs**: ``Conv`` (output elements x input channels per group x kernel area), ``Gemm`` and ``MatMul``
  (output elements x inner dimension), with shapes from ONNX shape inference; the convention of
  :mod:`hsnet.profiling` (convolutions and matrix products only). A symbolic batch counts as 1. Where shape
  inference cannot tell a shape (e.g. a ``Slice`` whose bounds are computed from ``Shape``, in a graph that
  onnxsim has not folded), the graph is run once on zeros with onnxruntime to read it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.deps import require
from deploy.errors import DeployError

__all__ = ["GraphStats", "cross_check", "graph_stats"]

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto enum values)


@dataclass
class GraphStats:
    """Counts of one ONNX graph.

    Attributes:
        params: floating-point parameter elements consumed by nodes (per use).
        stored_params: floating-point elements stored in the file (each initializer once).
        macs: multiply-adds of Conv/Gemm/MatMul for the graph's batch (symbolic batch = 1).
        batch: the graph's input batch (1 when symbolic).
        nodes: number of nodes.
        ops: operation type -> node count.
        macs_by_op: MACs per operation type.
        layers: per Conv/Gemm/MatMul node: ``name``, ``op``, ``input_shape``, ``weight_shape``, ``macs`` (not in
            :meth:`to_dict`: the per-operator breakdown of :mod:`benchmarks.ops` reads it).
    """

    params: int
    stored_params: int
    macs: int
    batch: int
    nodes: int
    ops: dict[str, int] = field(default_factory=dict)
    macs_by_op: dict[str, int] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def macs_per_image(self) -> int:
        return self.macs // max(self.batch, 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["layers"]
        return {**d, "macs_per_image": self.macs_per_image}


def _dims(value_info, batch_param: str | None = None) -> list[int | None] | None:  # noqa: ANN001
    """Static dims; the symbolic batch counts as 1, any other unknown dim is None."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (1 if batch_param and d.dim_param == batch_param else None)
        for d in t.shape.dim
    ]


def _complete(shape: list[int | None] | None) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _run_shapes(model, names: list[str]) -> dict[str, list[int]]:  # noqa: ANN001
    """Shapes of values ``names`` from one onnxruntime run on zeros (batch 1 for a symbolic batch)."""
    import numpy as np

    onnx = require("onnx", "onnx", "ONNX graph statistics")
    ort = require("onnxruntime", "onnx", "ONNX graph statistics")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, dtype=np.float16 if "float16" in inp.type else np.float32)
    values = session.run(names, feeds)
    return {n: list(v.shape) for n, v in zip(names, values, strict=True)}


def graph_stats(model: Any) -> GraphStats:
    """Count ``model`` (an ``onnx.ModelProto`` or a path to one).

    Raises:
        DeployError: a Conv/Gemm/MatMul whose shapes shape inference cannot determine.
    """
    require("onnx", "onnx", "ONNX graph statistics")
    from onnx import numpy_helper

    from deploy.onnx_shapes import infer_skeleton, load_onnx

    model = load_onnx(model)
    graph = infer_skeleton(model).graph  # shapes only; values come from ``model``
    batch_param = None
    if graph.input and graph.input[0].type.tensor_type.shape.dim:
        batch_param = graph.input[0].type.tensor_type.shape.dim[0].dim_param or None
    shapes: dict[str, list[int | None] | None] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        shapes[vi.name] = _dims(vi, batch_param)
    initializer_names = {i.name for i in model.graph.initializer}
    unknown = sorted(
        {
            name
            for node in graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul")
            for name in (node.input[0], node.input[1], node.output[0])
            if name not in initializer_names and not _complete(shapes.get(name))
        }
    )
    if unknown:
        shapes.update(_run_shapes(model, unknown))

    tensors: dict[str, tuple[int, bool, list[int]]] = {}  # name -> (elements, is_float, dims)
    for init in model.graph.initializer:
        tensors[init.name] = (math.prod(init.dims), init.data_type in _FLOAT_TYPES, list(init.dims))
    stored = sum(n for n, is_float, dims in tensors.values() if is_float and dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    arr = numpy_helper.to_array(attr.t)
                    tensors[node.output[0]] = (arr.size, attr.t.data_type in _FLOAT_TYPES, list(arr.shape))
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in tensors}

    params = 0
    macs_by_op: Counter[str] = Counter()
    layers: list[dict[str, Any]] = []
    for node in graph.node:
        if node.op_type in ("Identity", "Constant"):
            continue
        qdq = node.op_type in ("QuantizeLinear", "DequantizeLinear")
        for name in node.input[:1] if qdq else node.input:  # not the scales and zero points
            src = alias.get(name, name)
            if src in tensors:
                elements, is_float, dims = tensors[src]
                quantized = node.op_type == "DequantizeLinear"  # int8 weights, int32 biases
                if (is_float or quantized) and dims:
                    params += elements
        macs = _node_macs(node, shapes, tensors)
        if macs:
            macs_by_op[node.op_type] += macs
            layers.append({
                "name": node.name, "op": node.op_type, "macs": macs,
                "input_shape": _shape_of(node.input[0], shapes, tensors),
                "weight_shape": _shape_of(node.input[1], shapes, tensors),
            })  # fmt: skip

    batch = 1
    if model.graph.input:
        dims = _dims(model.graph.input[0], batch_param)
        batch = dims[0] if dims and dims[0] else 1
    return GraphStats(
        params=params,
        stored_params=stored,
        macs=sum(macs_by_op.values()),
        batch=batch,
        nodes=len(graph.node),
        ops=dict(Counter(n.op_type for n in graph.node)),
        macs_by_op=dict(macs_by_op),
        layers=layers,
    )


def _shape_of(name: str, shapes: dict, tensors: dict) -> list[int] | None:
    if name in tensors:
        return tensors[name][2]
    return shapes.get(name)


def _node_macs(node, shapes: dict, tensors: dict) -> int:  # noqa: ANN001
    if node.op_type not in ("Conv", "Gemm", "MatMul"):
        return 0
    out = shapes.get(node.output[0])
    a = _shape_of(node.input[0], shapes, tensors)
    b = _shape_of(node.input[1], shapes, tensors)
    if not (_complete(out) and _complete(a) and _complete(b)):
        raise DeployError(f"cannot count MACs of {node.op_type} node {node.name!r}: shape inference gave no shape")
    if node.op_type == "Conv":
        # weight (out, in/groups, *kernel): every output element needs in/groups * kernel-area multiply-adds
        return math.prod(out) * math.prod(b[1:])
    if node.op_type == "Gemm":
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        inner = a[0] if trans_a else a[1]
        return math.prod(out) * inner
    return math.prod(out) * a[-1]


def cross_check(stats: GraphStats, params: int, macs: int, constants: int = 0) -> dict[str, Any]:
    """Compare graph counts with the profiler's figures for the exported (prepared) model.

    Args:
        stats: counts of the exported graph.
        params: the profiler's parameter count.
        macs: the profiler's MACs for one image.
        constants: floating-point buffer elements of the model (e.g. the averaging matrices of
            :class:`deploy.rewrites.AdaptiveAvgPoolMatMul`): initializers in the graph, not parameters in
            PyTorch.
    """
    return {
        "graph_params": stats.params,
        "profiler_params": params,
        "constant_elements": constants,
        "params_equal": stats.params == params + constants,
        "graph_macs": stats.macs_per_image,
        "profiler_macs": macs,
        "macs_equal": stats.macs_per_image == macs,
    }
