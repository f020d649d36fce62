"""Where a runtime spends a model's time: the runtime's own per-operator profile, mapped to operator kinds.

Kinds (the profiler's of :mod:`hsnet.profiling`, as a CPU sees them):

- ``pointwise``: 1x1 convolutions, one group;
- ``depthwise``: one group per channel;
- ``grouped``: more than one group, fewer than the channels (HSNet's heterogeneous convolutions);
- ``dense``: larger kernels, one group;
- ``linear``: Gemm / MatMul;
- ``attention``: every node inside an attention block (ECA, squeeze-excite: ``attn``, ``eca``, ``se`` scopes);
- ``layout``: reorders (onnxruntime's NCHWc ``ReorderInput``/``ReorderOutput``), transposes, concatenations,
  reshapes, slices;
- ``other``: activations, additions, pooling.

A convolution's kind comes from its input and weight shapes (``groups = input channels / weight's input
channels``), so that a node the runtime fused or re-laid out (``FusedConv``, an NCHWc ``Conv``) keeps the kind of
the layer it computes; a convolution whose profiled shapes do not say it (int8's ``QLinearConv`` runs on an NHWC
input with its weights prepacked) takes the kind of the deployed graph's layer of the same name. An int8 graph
whose grouped convolutions were filled to one group (:mod:`deploy.targets.onnx.int8`) runs them as dense ones, and
they are counted so. Time shares come from the profile; MAC shares from the deployed graph itself
(:func:`deploy.graph_stats.graph_stats`), classified by the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "breakdown", "classify"]

KINDS = ("pointwise", "depthwise", "grouped", "dense", "linear", "attention", "layout", "other")

_LAYOUT = {
    "ReorderInput", "ReorderOutput", "Transpose", "Concat", "Reshape", "Flatten", "Split", "Slice", "Gather",
    "Squeeze", "Unsqueeze", "Pad", "Identity", "Expand", "Tile", "Cast",
}  # fmt: skip
_LINEAR = {"Gemm", "MatMul", "FusedGemm", "FusedMatMul", "MatMulInteger", "QLinearMatMul"}
_CONV = {"Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcFusedConv"}
#: The suffix onnxruntime's layout transformer gives a node it re-creates (``/stem/conv/Conv_token_21``).
_TOKEN = re.compile(r"_token_\d+$")
_ATTENTION = re.compile(r"(^|/)(attn|eca|se|attention)(/|\.|_|$)")


def classify(op: str, name: str, input_shape: Sequence[int] | None, weight_shape: Sequence[int] | None) -> str:
    """The kind (:data:`KINDS`) of one node: an operator, its name (module scopes) and input/weight shapes."""
    if _ATTENTION.search(name):
        return "attention"
    if op in _LAYOUT or op.startswith("Reorder"):
        return "layout"
    if op in _LINEAR:
        return "linear"
    if op in _CONV and input_shape and weight_shape and len(weight_shape) >= 3 and len(input_shape) >= 3:
        cin, per_group = int(input_shape[1]), int(weight_shape[1])
        groups = max(1, cin // max(per_group, 1))
        kernel = [int(k) for k in weight_shape[2:]]
        if groups == 1:
            return "pointwise" if all(k == 1 for k in kernel) else "dense"
        if per_group == 1:
            return "depthwise"
        return "grouped"
    return "other"


def breakdown(
    profile: dict[str, Any], onnx_path: Path | None, median_ms: float | None, *, layers: bool = False
) -> dict[str, Any]:
    """The per-kind table of one row from a worker's ``ops`` reply.

    Args:
        profile: the worker's reply (``nodes``: name -> ``{"op", "inputs", "us"}``, ``runs``, ``run_us``).
        onnx_path: the deployed graph, for MACs per kind (``None``: no MAC figures).
        median_ms: the row's median latency, which the node times are compared with.
        layers: also list every node (name, op, kind, microseconds), slowest first.

    Returns:
        ``{"kinds": {kind: {"ms", "time_share", "macs", "mac_share", "gmacs_per_s"}}, "sum_ms", "median_ms",
        "sum_vs_median", "profiled_run_ms", "nodes", "source"}`` (and ``"layers"`` on request).
    """
    kinds: dict[str, dict[str, float]] = {k: {"ms": 0.0, "macs": 0} for k in KINDS}
    graph_kinds: dict[str, str] = {}  # the deployed graph's own layers, by name
    if onnx_path is not None:
        from deploy.graph_stats import graph_stats

        stats = graph_stats(onnx_path)
        for layer in stats.layers:
            kind = classify(layer["op"], layer["name"], layer["input_shape"], layer["weight_shape"])
            graph_kinds[layer["name"]] = kind
            kinds[kind]["macs"] += layer["macs"] // max(stats.batch, 1)
    rows = []
    for name, node in profile["nodes"].items():
        inputs = node.get("inputs") or []
        kind = classify(node["op"], name, inputs[0] if inputs else None, inputs[1] if len(inputs) > 1 else None)
        if kind == "other" and node["op"] in _CONV:  # e.g. int8's QLinearConv: NHWC input, weights prepacked
            kind = graph_kinds.get(_TOKEN.sub("", name), kind)
        kinds[kind]["ms"] += node["us"] / 1e3
        rows.append({"name": name, "op": node["op"], "kind": kind, "us": round(node["us"], 3)})
    total_ms = sum(k["ms"] for k in kinds.values())
    total_macs = sum(k["macs"] for k in kinds.values())
    table = {}
    for kind, k in kinds.items():
        if not k["ms"] and not k["macs"]:
            continue
        table[kind] = {
            "ms": round(k["ms"], 6),
            "time_share": k["ms"] / total_ms if total_ms else None,
            "macs": int(k["macs"]) if onnx_path is not None else None,
            "mac_share": k["macs"] / total_macs if total_macs else None,
            "gmacs_per_s": (k["macs"] / (k["ms"] / 1e3) / 1e9) if k["ms"] and k["macs"] else None,
        }
    out: dict[str, Any] = {
        "source": "onnxruntime profiler (enable_profiling), kernel time per node, mean of "
        f"{profile['runs']} calls in a second session",
        "kinds": table,
        "sum_ms": round(total_ms, 6),
        "profiled_run_ms": round(profile["run_us"] / 1e3, 6),
        "median_ms": median_ms,
        "sum_vs_median": total_ms / median_ms if median_ms else None,
        "nodes": len(rows),
    }
    if layers:
        out["layers"] = sorted(rows, key=lambda r: -r["us"])
    return out
