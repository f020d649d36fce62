"""ONNX graph rewrites applied to the TFLite target's private copy of the graph (each exact; proven by tests).

* **MaxPool padding as an explicit zero Pad after a ReLU.** onnx2tf turns a padded ``MaxPool`` into TFLite's
  ``PADV2`` with ``-inf`` followed by a VALID ``MAX_POOL_2D`` (TFLite's SAME padding is asymmetric, ONNX's is
  not). In int8 that pair makes LiteRT's default XNNPACK delegate fail to prepare the model ("failed to create
  XNNPACK runtime", ai-edge-litert 2.3), so the file would not even load on a phone. When the pooled tensor
  comes from a ``Relu`` (or a ``Clip`` whose minimum is >= 0) every value is >= 0, and padding with 0 instead
  of -inf gives the same maxima (every window holds at least one real value, which is >= 0): the pads move to a
  ``Pad`` node with value 0 (TFLite ``PAD``, which XNNPACK handles) and the ``MaxPool`` keeps none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.deps import require
from deploy.errors import DeployError

__all__ = ["pad_maxpool_after_relu", "padded_maxpools", "rewrite_for_tflite"]


def rewrite_for_tflite(src: Path, dst: Path | None = None) -> tuple[list[str], list[str]]:
    """Apply every rewrite of this module to the graph at ``src``; write the result to ``dst`` (if given).

    Returns:
        (one line per rewritten node, names of the padded ``MaxPool`` nodes that could not be rewritten). With
        nothing to rewrite, ``dst`` is an unchanged copy.
    """
    onnx = require("onnx", "onnx", "TFLite graph rewrites")
    try:
        model = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and OSError alike: one clear line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DeployError(f"{src}: not a readable ONNX graph ({first})") from None
    applied = pad_maxpool_after_relu(model)
    if dst is not None:
        onnx.save(model, str(dst))
    return applied, padded_maxpools(model)


def pad_maxpool_after_relu(model) -> list[str]:  # noqa: ANN001 - onnx.ModelProto, imported lazily
    """Move the pads of every ``MaxPool`` fed by a non-negative producer into a zero ``Pad`` node (in place).

    Only ``auto_pad=NOTSET``, ``ceil_mode=0`` pools on 4-D tensors are rewritten; others are left alone.

    Returns:
        ``"MaxPool <name> (pads [t, l, b, r]) after <op> <name>"`` for each rewritten node; padded pools left
        alone (an input that may be negative) are what :func:`padded_maxpools` still finds afterwards.
    """
    onnx = require("onnx", "onnx", "TFLite graph rewrites")
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    applied = []
    for index in range(len(graph.node) - 1, -1, -1):  # backwards, so insertions do not shift what is left
        node = graph.node[index]
        if node.op_type != "MaxPool":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", []))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if len(pads) != 4 or not any(pads) or auto_pad not in (b"NOTSET", "NOTSET") or attrs.get("ceil_mode", 0):
            continue
        source = producers.get(node.input[0])
        if source is None or not _non_negative(source, constants):
            continue
        top, left, bottom, right = (int(p) for p in pads)
        pads_name = f"{node.name or node.output[0]}/zero_pads"
        graph.initializer.append(
            numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64), pads_name)
        )
        padded = f"{node.input[0]}/zero_padded"
        pad = helper.make_node("Pad", [node.input[0], pads_name], [padded], name=f"{node.name}/zero_pad")
        node.input[0] = padded
        kept = [a for a in node.attribute if a.name != "pads"]
        del node.attribute[:]
        node.attribute.extend(kept)
        graph.node.insert(index, pad)
        applied.append(f"MaxPool {node.name} (pads {pads}) after {source.op_type} {source.name}")
    if applied:
        onnx.checker.check_model(model)
    return applied[::-1]


def padded_maxpools(model) -> list[str]:  # noqa: ANN001 - onnx.ModelProto
    """Names of the ``MaxPool`` nodes that still pad their input (run after :func:`pad_maxpool_after_relu`)."""
    from onnx import helper

    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MaxPool" and any(any(helper.get_attribute_value(a)) for a in n.attribute if a.name == "pads")
    ]


def _non_negative(node, constants: dict) -> bool:  # noqa: ANN001 - onnx.NodeProto
    """True when every output value of ``node`` is >= 0 (ReLU, or Clip with a constant minimum >= 0)."""
    if node.op_type == "Relu":
        return True
    if node.op_type == "Clip":
        minimum = None
        if len(node.input) > 1 and node.input[1]:
            value = constants.get(node.input[1])
            minimum = None if value is None else float(value)
        else:
            minimum = next((a.f for a in node.attribute if a.name == "min"), None)  # opset < 11
        return minimum is not None and minimum >= 0
    return False
