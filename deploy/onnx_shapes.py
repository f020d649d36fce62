"""ONNX shape inference without copying the weights: the graph's skeleton is inferred instead of the model.

``onnx.shape_inference.infer_shapes`` serializes the whole model (weights included) to C++ and parses the
result back: seconds and twice the memory for VGG-16's 550 MB. Shape inference only needs the weights' shapes,
so large floating-point initializers become typed graph inputs of the same shape; small ones (shape and index
constants that inference may read) are kept as they are.
"""

from __future__ import annotations

from typing import Any

from deploy.deps import require

__all__ = ["infer_skeleton", "load_onnx"]

#: Initializers up to this many elements keep their values (shape constants, slice bounds, gather indices).
_KEEP_ELEMENTS = 4096


def load_onnx(model: Any) -> Any:
    """``model`` as an ``onnx.ModelProto`` (a path is loaded; a proto is returned as is)."""
    onnx = require("onnx", "onnx", "reading ONNX graphs")
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def infer_skeleton(model: Any) -> Any:
    """A shape-inferred copy of ``model``'s graph without its large weights.

    The result has the same nodes, inputs (plus one per dropped initializer), outputs and inferred
    ``value_info``; use the original model for initializer values.
    """
    onnx = require("onnx", "onnx", "ONNX shape inference")
    import math

    model = load_onnx(model)
    src = model.graph
    graph = onnx.GraphProto(name=src.name)
    graph.node.extend(src.node)
    graph.input.extend(src.input)
    graph.output.extend(src.output)
    graph.value_info.extend(src.value_info)
    input_names = {i.name for i in src.input}
    for init in src.initializer:
        if math.prod(init.dims) <= _KEEP_ELEMENTS:
            graph.initializer.append(init)
        elif init.name not in input_names:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    skeleton = onnx.ModelProto(ir_version=model.ir_version, graph=graph)
    skeleton.opset_import.extend(model.opset_import)
    return onnx.shape_inference.infer_shapes(skeleton)
