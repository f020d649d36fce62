"""Pre-flight: known trouble in a graph for a target, reported before any conversion starts.

What is looked for (in the ONNX graph the targets start from, after the export rewrites):

* reshapes/transposes producing tensors of rank 5 or more (channel shuffle's classic form): layout converters
  to NHWC (onnx2tf) must guess their layout, and mobile delegates handle them poorly (warning);
* 1-D convolutions (a ``Conv`` on a 3-D tensor, ECA's form): not native in TFLite (warning);
* dynamic dimensions other than a named batch (warning);
* a dynamic batch (warning for targets that need a fixed one, which then refuse it in ``validate``);
* operations the target lists in :attr:`deploy.targets.base.Exporter.unsupported_ops` (error: the export stops).

Each rewrite that was applied is listed as an ``info`` finding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Finding", "GraphScan", "graph_findings", "rewrite_findings", "scan_graph"]


@dataclass(frozen=True)
class Finding:
    """One pre-flight observation about the graph for a target.

    Attributes:
        target: exporter name.
        severity: ``"info"`` (a rewrite was applied), ``"warning"`` or ``"error"`` (export cannot proceed).
        message: one line naming the operation/layer and what was done about it.
    """

    target: str
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "severity": self.severity, "message": self.message}


@dataclass
class GraphScan:
    """What :func:`scan_graph` found.

    Attributes:
        ops: operation type -> count.
        high_rank: ``(node name, op type, rank)`` of reshapes/transposes with outputs of rank >= 5.
        conv1d: names of Conv nodes on 3-D tensors.
        dynamic_batch: the input's batch dimension is symbolic.
        dynamic_dims: ``value name: dims`` of values with unknown dimensions other than the batch.
    """

    ops: dict[str, int] = field(default_factory=dict)
    high_rank: list[tuple[str, str, int]] = field(default_factory=list)
    conv1d: list[str] = field(default_factory=list)
    dynamic_batch: bool = False
    dynamic_dims: list[str] = field(default_factory=list)


def scan_graph(onnx_path: Path) -> GraphScan:
    """Scan the graph at ``onnx_path`` (a path or an ``onnx.ModelProto``) with ONNX shape inference."""
    from deploy.onnx_shapes import infer_skeleton

    graph = infer_skeleton(onnx_path).graph
    rank: dict[str, int] = {}
    dynamic: list[str] = []
    batch_param = None
    if graph.input and graph.input[0].type.tensor_type.shape.dim:
        batch_param = graph.input[0].type.tensor_type.shape.dim[0].dim_param or None
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        rank[vi.name] = len(t.shape.dim)
        unknown = [i for i, d in enumerate(t.shape.dim) if not d.HasField("dim_value")]
        if unknown and not (unknown == [0] and batch_param and t.shape.dim[0].dim_param == batch_param):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            dynamic.append(f"{vi.name}: {dims}")
    for init in graph.initializer:
        rank[init.name] = len(init.dims)
    scan = GraphScan(
        ops=dict(Counter(n.op_type for n in graph.node)),
        dynamic_batch=batch_param is not None,
        dynamic_dims=dynamic,
    )
    for node in graph.node:
        r = rank.get(node.output[0], 0)
        if node.op_type == "Transpose":  # its rank is known from ``perm`` even where shapes are not
            r = max(r, *(len(a.ints) for a in node.attribute if a.name == "perm"), 0)
        if node.op_type in ("Reshape", "Transpose", "Unsqueeze", "Expand") and r >= 5:
            scan.high_rank.append((node.name, node.op_type, r))
        if node.op_type == "Conv" and 3 in (rank.get(node.input[0]), rank.get(node.input[1])):  # data or weight
            scan.conv1d.append(node.name)
    return scan


def rewrite_findings(target: str, rewrites: list[str]) -> list[Finding]:
    """One ``info`` finding per kind of rewrite in ``rewrites`` (``"<rewrite> at <module>"`` strings)."""
    by_kind: dict[str, list[str]] = {}
    for text in rewrites:
        kind, _, where = text.partition(" at ")
        by_kind.setdefault(kind, []).append(where)
    return [
        Finding(target, "info", f"rewrite applied: {kind} at {len(where)} modules ({', '.join(where[:3])}"
                f"{', ...' if len(where) > 3 else ''})")
        for kind, where in by_kind.items()
    ]  # fmt: skip


def graph_findings(
    target: str,
    onnx_path: Path,
    rewrites: list[str],
    *,
    dynamic_batch_ok: bool = True,
    unsupported_ops: frozenset[str] = frozenset(),
) -> list[Finding]:
    """The default pre-flight of every exporter (see module docstring) for ``target``'s graph at ``onnx_path``."""
    scan = scan_graph(onnx_path)
    findings = rewrite_findings(target, rewrites)
    for name, op, r in scan.high_rank:
        findings.append(Finding(target, "warning", f"{op} {name} makes a rank-{r} tensor (layout converters guess)"))
    for name in scan.conv1d:
        findings.append(Finding(target, "warning", f"1-D convolution {name} (emulated with reshapes on {target})"))
    for text in scan.dynamic_dims[:5]:
        findings.append(Finding(target, "warning", f"dynamic dimension {text}"))
    if scan.dynamic_batch:
        severity = "warning" if dynamic_batch_ok else "error"
        findings.append(Finding(target, severity, "dynamic batch dimension"))
    for op in sorted(set(scan.ops) & unsupported_ops):
        findings.append(Finding(target, "error", f"operation {op} ({scan.ops[op]} nodes) is not supported by {target}"))
    return findings
