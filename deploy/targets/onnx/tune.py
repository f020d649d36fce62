"""``hsnet deploy export --tune``: the ONNX graphs tuned for onnxruntime on this machine, layer by layer.

fp32 (:func:`tune_onnx`) and int8 (:func:`tune_int8`, whose choices the int8 export applies only where the result
is bit-identical to the plain QDQ graph, as for its default filling to one group).

The variants deploy knows for a layer are exact rewrites: a grouped convolution (neither one group nor depthwise)
may run with any divisor of its group count, its weights filled out block-diagonally (:mod:`.groups`). Each
grouped convolution is cut out as a one-node graph on its real input shape, and its variants are timed in
onnxruntime with the export's thread count, interleaved over rounds in a fresh random order each round, in one
process; the fastest median is kept, and only if it beats the original by more than ``MIN_GAIN`` (else the
original stays: no change for noise). The tuned whole graph is then proven equal to the original on the parity
images (max abs difference at most ``MAX_ABS``) and both are timed, interleaved, for the whole-model ratio. The
manifest records each layer's choice, its variants' times and gain, and the whole-model figures.

Without ``--tune`` the export keeps the graph as it is: the choices depend on the layer's shape and the machine's
kernels (docs/deploy.md has one machine's), and one machine is no family default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from deploy.deps import require
from deploy.errors import DeployError
from deploy.targets.onnx.groups import block_diagonal, divisors, grouped_float_nodes, regroup
from deploy.tuning import MIN_GAIN, keep_fastest, time_interleaved
from hsnet.toolbox.progress import log as _log

__all__ = ["MAX_ABS", "MIN_GAIN", "LayerChoice", "TuneReport", "tune_int8", "tune_onnx"]

#: The tuned graph must agree with the original within this (max abs on the parity images).
MAX_ABS = 1e-5


@dataclass
class LayerChoice:
    """One grouped convolution: its variants' median times (us, by group count) and the one kept."""

    name: str
    shape: list[int]
    groups_before: int
    groups_after: int
    us: dict[int, float]
    gain: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "us": {str(k): round(v, 2) for k, v in self.us.items()}, "gain": round(self.gain, 3)}


@dataclass
class TuneReport:
    """What ``--tune`` measured and kept (recorded in the manifest as ``tuning``)."""

    runtime: str
    threads: int
    layers: list[LayerChoice] = field(default_factory=list)
    whole_before_ms: float | None = None
    whole_after_ms: float | None = None
    max_abs: float | None = None

    @property
    def ratio(self) -> float | None:
        """Original / tuned median time of the whole graph (above 1: the tuned graph is faster)."""
        if not self.whole_before_ms or not self.whole_after_ms:
            return None
        return self.whole_before_ms / self.whole_after_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "threads": self.threads,
            "layers": [c.to_dict() for c in self.layers],
            "kept": sum(c.groups_after != c.groups_before for c in self.layers),
            "whole_before_ms": self.whole_before_ms,
            "whole_after_ms": self.whole_after_ms,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "max_abs": self.max_abs,
        }

    def describe(self) -> str:
        kept = sum(c.groups_after != c.groups_before for c in self.layers)
        text = f"{kept} of {len(self.layers)} grouped convolution(s) re-grouped"
        if self.ratio is not None:
            text += (f"; whole graph {self.whole_before_ms:.2f} -> {self.whole_after_ms:.2f} ms (x{self.ratio:.2f}, "
                     f"max abs {self.max_abs:.1e}) [{self.runtime}, {self.threads} thread(s), fp32]")  # fmt: skip
        return text


def _one_conv(node: Any, weight: np.ndarray, bias: np.ndarray | None, groups: int, shape: list[int]) -> bytes:
    """A one-node graph: ``node``'s convolution with ``weight`` and ``groups``, on an input of ``shape``."""
    onnx = require("onnx", "onnx", "--tune")
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
        inputs.append("b")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "group"}
    conv = helper.make_node("Conv", inputs, ["y"], group=groups, **attrs)
    graph = helper.make_graph([conv], "layer", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _time_variants(sessions: dict[int, Any], feed: dict[str, np.ndarray], rounds: int, calls: int) -> dict[int, float]:
    """Median us per call of each session, interleaved (:func:`deploy.tuning.time_interleaved`)."""
    return time_interleaved({k: partial(s.run, None, feed) for k, s in sessions.items()}, rounds=rounds,
                            per_round=calls)  # fmt: skip


def tune_onnx(
    src: Path,
    dst: Path,
    x: np.ndarray,
    *,
    threads: int = 1,
    rounds: int = 15,
    calls: int = 10,
    log: Callable[[str], None] = _log,
) -> TuneReport:
    """Tune ``src`` (fp32 ONNX) into ``dst`` for onnxruntime here; ``x`` are the parity images (float32 NCHW).

    Raises:
        DeployError: the tuned graph does not agree with the original within :data:`MAX_ABS` (nothing is kept).
    """
    onnx = require("onnx", "onnx", "--tune")
    ort = require("onnxruntime", "onnx", "--tune")
    from onnx import numpy_helper

    from deploy.onnx_export import check_onnx
    from deploy.targets.onnx.session import session_options

    model = onnx.load(str(src))
    shapes = _input_shapes(model)
    inits = {t.name: t for t in model.graph.initializer}
    report = TuneReport(runtime=f"onnxruntime {ort.__version__}", threads=threads)
    opts = session_options(threads)
    for node, weight, groups in grouped_float_nodes(model):
        shape = shapes.get(node.input[0])
        if not shape or any(d <= 0 for d in shape):
            continue
        w = numpy_helper.to_array(weight)
        b = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else None
        graphs = {d: _one_conv(node, block_diagonal(w, groups, d), b, d, shape) for d in divisors(groups)}
        choice = _choose(node.name, shape, groups, graphs, opts, rounds, calls, log, "tune")
        report.layers.append(choice)
        if choice.groups_after != groups:
            regroup(node, weight, groups, choice.groups_after)
    onnx.save(model, str(dst))
    check_onnx(Path(dst))
    _prove_and_time(src, dst, x, report, opts, ort)
    return report


def _input_shapes(model: Any) -> dict[str, list[int]]:
    """Every tensor's shape from ONNX shape inference (0 for an unknown dimension)."""
    onnx = require("onnx", "onnx", "--tune")

    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.value_info, *inferred.graph.input]}  # fmt: skip


def _choose(name: str, shape: list[int], groups: int, graphs: dict[int, bytes], opts: Any, rounds: int, calls: int,
            log: Callable[[str], None], what: str) -> LayerChoice:  # fmt: skip
    """Time one layer's variant graphs (by group count) and keep the fastest when it beats ``groups`` by more than
    :data:`MIN_GAIN`."""
    ort = require("onnxruntime", "onnx", "--tune")

    sessions = {d: ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"]) for d, g in graphs.items()}
    feed = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    us = _time_variants(sessions, feed, rounds, calls)
    keep = keep_fastest(us, groups)
    log(f"[deploy] {what} {name} {shape}: " + ", ".join(f"{d} groups {t:.1f} us" for d, t in us.items())
        + (f" -> {keep} groups (x{us[groups] / us[keep]:.2f})" if keep != groups else " -> unchanged"))  # fmt: skip
    return LayerChoice(name, shape, groups, keep, us, us[groups] / us[keep])


def _prove_and_time(src: Path, dst: Path, x: np.ndarray, report: TuneReport, opts: Any, ort: Any) -> None:
    """Max abs difference of the tuned graph from the original on ``x``, and both whole graphs timed."""
    a, b = (ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (src, dst))
    name = a.get_inputs()[0].name
    batch = a.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) and batch > 0 else 1
    worst = 0.0
    for i in range(0, len(x) - step + 1, step):
        feed = {name: np.ascontiguousarray(x[i : i + step], dtype=np.float32)}
        worst = max(worst, float(np.abs(a.run(None, feed)[0] - b.run(None, feed)[0]).max()))
    report.max_abs = worst
    if worst > MAX_ABS:
        raise DeployError(f"--tune: the tuned graph differs from the original by {worst:.2e} (> {MAX_ABS:g}); "
                          "not kept")  # fmt: skip
    feed = {name: np.ascontiguousarray(x[:step], dtype=np.float32)}
    times = _time_variants({0: a, 1: b}, feed, rounds=10, calls=5)
    report.whole_before_ms, report.whole_after_ms = times[0] / 1e3, times[1] / 1e3


def _qdq_layer(model: Any, conv: dict[str, Any], groups: int, shape: list[int]) -> bytes | None:
    """One grouped QDQ convolution of ``model`` cut out as its own graph (float input quantized with the layer's
    own input scale, the weights filled to ``groups``, the output's quantize-dequantize kept), so that onnxruntime
    fuses it into the same ``QLinearConv`` as in the whole graph. None when the layer's input is not a
    ``DequantizeLinear`` of constant scale and zero point."""
    onnx = require("onnx", "onnx", "--tune")
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = [n for n in model.graph.node if conv["node"].output[0] in n.input]
    node, dqw = conv["node"], conv["dq"]
    dqx = producers.get(node.input[0])
    if dqx is None or dqx.op_type != "DequantizeLinear" or not all(i in inits for i in dqx.input[1:]):
        return None
    used: list[Any] = []

    def const(name: str, new: str) -> str:
        t = onnx.TensorProto()
        t.CopyFrom(inits[name])
        t.name = new
        used.append(t)
        return new

    sx, zx = (const(n, f"x_{k}") for k, n in zip(("scale", "zero"), dqx.input[1:3], strict=False))
    w = block_diagonal(numpy_helper.to_array(conv["weight"]), conv["groups"], groups)
    used.append(numpy_helper.from_array(w, "wq"))
    nodes = [helper.make_node("QuantizeLinear", ["x", sx, zx], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", sx, zx], ["xd"])]  # fmt: skip
    w_inputs = ["wq", *(const(n, f"w_{i}") for i, n in enumerate(dqw.input[1:]))]
    nodes.append(helper.make_node("DequantizeLinear", w_inputs, ["wd"], **_attrs(dqw)))
    conv_inputs = ["xd", "wd"]
    if len(node.input) > 2 and node.input[2]:
        dqb = producers.get(node.input[2])
        if dqb is not None and dqb.op_type == "DequantizeLinear" and all(i in inits for i in dqb.input):
            b_inputs = [const(n, f"b_{i}") for i, n in enumerate(dqb.input)]
            nodes.append(helper.make_node("DequantizeLinear", b_inputs, ["bd"], **_attrs(dqb)))
            conv_inputs.append("bd")
        elif node.input[2] in inits:
            conv_inputs.append(const(node.input[2], "b"))
        else:
            return None
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], **{**_attrs(node), "group": groups}))
    out = "y"
    q = next((c for c in consumers if c.op_type == "QuantizeLinear" and all(i in inits for i in c.input[1:])), None)
    if q is not None:
        sy, zy = (const(n, f"y_{k}") for k, n in zip(("scale", "zero"), q.input[1:3], strict=False))
        nodes += [helper.make_node("QuantizeLinear", ["y", sy, zy], ["yq"]),
                  helper.make_node("DequantizeLinear", ["yq", sy, zy], ["yd"])]  # fmt: skip
        out = "yd"
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], used)  # fmt: skip
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def tune_int8(
    plain: Path, *, threads: int = 1, rounds: int = 15, calls: int = 10, log: Callable[[str], None] = _log
) -> tuple[dict[str, int], list[LayerChoice]]:
    """Per grouped QDQ convolution of the plain int8 graph ``plain``: its filling variants (group counts) timed
    in onnxruntime here as one-layer graphs; returns the group count kept per layer (the fastest, when more than
    :data:`MIN_GAIN` faster than the layer as it is) and each layer's figures. The caller fills with these choices
    and keeps the result only where it is bit-identical to the plain graph (:mod:`.int8`)."""
    onnx = require("onnx", "onnx", "--tune")
    from deploy.targets.onnx.int8 import grouped_convs
    from deploy.targets.onnx.session import session_options

    model = onnx.load(str(plain))
    shapes = _input_shapes(model)
    opts = session_options(threads)
    choices: dict[str, int] = {}
    layers: list[LayerChoice] = []
    for conv in grouped_convs(model):
        node, groups = conv["node"], conv["groups"]
        shape = shapes.get(node.input[0])
        if not shape or any(d <= 0 for d in shape):
            continue
        graphs = {d: _qdq_layer(model, conv, d, shape) for d in divisors(groups)}
        if any(g is None for g in graphs.values()):
            continue
        choice = _choose(node.name, shape, groups, graphs, opts, rounds, calls, log, "tune int8")  # type: ignore[arg-type]
        choices[node.name] = choice.groups_after
        layers.append(choice)
    return choices, layers
