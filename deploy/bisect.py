"""``--bisect``: find the first layer where an artifact stops computing what the PyTorch model computes.

Two strategies. :func:`bisect_onnx` works on one ONNX file, in one run (below). :func:`bisect_export` works for
any target: it converts the model cut after a module, binary-searching for the first cut whose artifact
diverges (a few conversions), for when the ONNX graph is right and a converter is not.

The TorchScript exporter names every node after the module scope it came from
(``/stages/stages.1/stages.1.0/expand/gwc/conv/Conv`` is module ``stages.1.0.expand.gwc.conv``). For every
module of the prepared model, the output of the last node inside its scope is the module's output; all of them
are added as graph outputs, the graph runs once on real images, and each is compared with the module's output
captured by a forward hook. Modules are visited in graph order, so the first one beyond the precision's
tolerance is where the outputs diverge: a wrong weight, a mis-converted operation or a numerics problem there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.deps import require
from deploy.errors import DeployError
from deploy.parity import TOLERANCES

__all__ = ["Divergence", "TruncatedModel", "bisect_export", "bisect_onnx", "module_of_node"]


@dataclass(frozen=True)
class Divergence:
    """The first layer whose output differs beyond tolerance.

    Attributes:
        module: PyTorch module name (in the prepared, re-parameterised model).
        node: ONNX node name whose output was compared (the module's last node).
        op_type: that node's operation type.
        max_abs_error: max |graph - module output|.
        max_rel_error: ``max_abs_error`` / max |module output|.
        compared: how many layers were compared to find it (graph outputs, or truncated conversions).
    """

    module: str
    node: str
    op_type: str
    max_abs_error: float
    max_rel_error: float
    compared: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"first divergence at module {self.module!r} (ONNX node {self.node!r}, {self.op_type}): "
            f"max abs {self.max_abs_error:.2e}, rel {self.max_rel_error:.2e} ({self.compared} comparisons)"
        )


def module_of_node(node_name: str, module_names: set[str]) -> str:
    """The module a TorchScript-exported node belongs to ('' when the name carries no scope).

    Scope components name children by attribute, except that children of containers repeat the parent's
    component (``stages`` / ``stages.0`` / ``stages.0.0``): those contribute only their last part.
    """
    parts = node_name.split("/")[1:-1] if node_name.startswith("/") else []
    path: list[str] = []
    prev = None
    for comp in parts:
        if prev is not None and comp.startswith(prev + "."):
            path.append(comp[len(prev) + 1 :])
        else:
            path.append(comp)
        prev = comp
    # Keep the longest prefix that is a real module (a functional op inside a module has no scope of its own).
    while path and ".".join(path) not in module_names:
        path.pop()
    return ".".join(path)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


@torch.no_grad()
def _module_outputs(model: nn.Module, x: np.ndarray, names: set[str]) -> dict[str, np.ndarray]:
    outputs: dict[str, np.ndarray] = {}

    def capture(name: str):  # noqa: ANN202
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and name not in outputs:
                outputs[name] = out.detach().clone().numpy()  # clone: a later in-place op must not change it

        return hook

    handles = [m.register_forward_hook(capture(n)) for n, m in model.named_modules() if n in names]
    try:
        model.eval()(torch.tensor(x))  # a copy: parity images are read-only arrays
    finally:
        for h in handles:
            h.remove()
    return outputs


def bisect_onnx(
    onnx_path: Path, model: nn.Module, x: np.ndarray, *, precision: str = "fp32", threads: int | None = 1
) -> Divergence | None:
    """Compare every module's output of ``model`` with the graph's value for it; return the first divergence.

    Args:
        onnx_path: a graph exported from ``model`` by :mod:`deploy.onnx_export` (names carry module scopes).
        model: the prepared (re-parameterised, rewritten) model the graph was exported from.
        x: float32 NCHW normalized images (a fixed-batch graph uses its batch of them).
        precision: selects the relative tolerance of :data:`deploy.parity.TOLERANCES`.
        threads: onnxruntime intra-op threads.

    Returns:
        The first diverging layer, or None when every compared layer is within tolerance.

    Raises:
        DeployError: the graph has no node that maps to a module of ``model`` (not exported from it).
    """
    onnx = require("onnx", "onnx", "bisecting an ONNX graph")
    ort = require("onnxruntime", "onnx", "bisecting an ONNX graph")
    from deploy.targets.onnx import session_options

    graph_model = onnx.load(str(onnx_path))
    names = {n for n, _ in model.named_modules() if n}
    last_node: dict[str, tuple[int, Any]] = {}
    for index, node in enumerate(graph_model.graph.node):
        module = module_of_node(node.name, names)
        if module and node.op_type not in ("Constant", "Identity"):
            for owner in _ancestors(module):
                last_node[owner] = (index, node)
    if not last_node:
        raise DeployError(f"{onnx_path.name}: no node names a module of {type(model).__name__}; cannot bisect")
    # Graph order; where a module and its child end on the same node, name the child (the more precise one).
    order = sorted(last_node.items(), key=lambda item: (item[1][0], -item[0].count(".")))

    dims = graph_model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else min(len(x), 8)
    x = np.ascontiguousarray(x[:batch], dtype=np.float32)
    if len(x) < batch:
        x = np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])

    value_names = list(dict.fromkeys(node.output[0] for _, (_, node) in order))
    existing = {o.name for o in graph_model.graph.output}
    graph_model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in value_names if n not in existing)
    session = ort.InferenceSession(
        graph_model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    values = dict(zip(value_names, session.run(value_names, {input_name: x}), strict=True))
    reference = _module_outputs(model, x, set(last_node))

    tol = TOLERANCES[precision].max_rel_error
    compared = 0
    for module, (_, node) in order:
        ref = reference.get(module)
        got = values[node.output[0]]
        if ref is None or ref.shape != got.shape:
            continue  # the module's output is not this value (e.g. a tuple output): nothing to compare
        compared += 1
        diff = np.abs(got.astype(np.float64) - ref)
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        if not np.isfinite(got).all() or rel > tol:
            return Divergence(module, node.name, node.op_type, max_abs, rel, compared)
    return None


class TruncatedModel(nn.Module):
    """``model`` cut after module ``name``: returns that module's output flattened to (batch, features).

    A forward hook hands the module's output out of the full forward pass; the exporters' dead-code elimination
    (TorchScript's, coremltools') drops what comes after it. The flattened 2-D output keeps every target's
    calling convention (logits-shaped), whatever the target's internal layout.
    """

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []
        handle = self.model.get_submodule(self.name).register_forward_hook(lambda _m, _i, out: box.append(out))
        try:
            self.model(x)
        finally:
            handle.remove()
        return box[0].flatten(1)


@torch.no_grad()
def _execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Module names in the order their forward finished (a topological order of their outputs)."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def done(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and name not in order:
                order.append(name)

        handles.append(module.register_forward_hook(done))
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return order


def bisect_export(
    exporter: Any, ctx: Any, x: np.ndarray, *, precision: str, threads: int | None = 1
) -> Divergence | None:
    """Binary search for the first module whose output the target's converter gets wrong.

    Every probe exports ``ctx.model`` cut after one module (:class:`TruncatedModel`) through the ONNX stage and
    the target's own ``exporter.export``, runs the artifact, and compares with PyTorch on ``x`` (relative
    error against the tolerance of ``precision``). About log2(modules) conversions: minutes for slow converters.

    Args:
        exporter: the :class:`deploy.targets.base.Exporter` whose artifact failed parity.
        ctx: the :class:`deploy.targets.base.ExportContext` of that export.
        x: float32 NCHW normalized images (a few are enough).

    Returns:
        The first diverging module (with the ONNX node that computes it in the full graph), or None when even
        the full model's outputs agree.
    """
    import dataclasses

    from deploy.onnx_export import export_onnx
    from deploy.parity import predict
    from deploy.simplify import simplify_onnx
    from deploy.targets import load_artifact

    onnx = require("onnx", "onnx", "bisecting an export")
    model = ctx.model.eval()
    xt = torch.tensor(x)
    order = _execution_order(model, xt)
    tol = TOLERANCES[precision].max_rel_error
    probes: dict[int, tuple[bool, float, float]] = {}

    def diverges(i: int) -> bool:
        cut = TruncatedModel(model, order[i]).eval()
        with torch.no_grad():
            want = cut(xt).numpy().astype(np.float64)
        probe_dir = Path(ctx.work_dir) / f"bisect-{i}"
        probe_dir.mkdir(parents=True, exist_ok=True)
        shape = tuple(ctx.input_shape)
        export_onnx(cut, probe_dir / "cut.onnx", input_shape=shape, dynamic_batch=ctx.options.batch is None,
                    opset=ctx.options.opset, metadata=dict(ctx.metadata))  # fmt: skip
        simplify_onnx(probe_dir / "cut.onnx", probe_dir / "cut_simplified.onnx")
        labels = [str(j) for j in range(want.shape[1])]
        sub = dataclasses.replace(ctx, model=cut, onnx_path=probe_dir / "cut_simplified.onnx", labels=labels,
                                  work_dir=probe_dir)  # fmt: skip
        got = predict(load_artifact(exporter.export(sub), threads=threads), x).astype(np.float64)
        max_abs = float(np.abs(got - want).max())
        scale = float(np.abs(want).max())
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        bad = not np.isfinite(got).all() or rel > tol
        probes[i] = (bad, max_abs, rel)
        return bad

    lo, hi = -1, len(order) - 1  # invariant: order[lo] agrees (or lo = -1), order[hi] diverges
    if not diverges(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if diverges(mid):
            hi = mid
        else:
            lo = mid
    _, max_abs, rel = probes[hi]
    names = {n for n, _ in model.named_modules() if n}
    node_name, op_type = "", type(model.get_submodule(order[hi])).__name__
    for node in onnx.load(str(ctx.onnx_path)).graph.node:
        owner = module_of_node(node.name, names)
        if owner == order[hi] or owner.startswith(order[hi] + "."):
            node_name, op_type = node.name, node.op_type
    return Divergence(order[hi], node_name, op_type, max_abs, rel, len(probes))
