"""Grouped convolutions with fewer groups: the same convolution, its weights filled out block-diagonally.

A convolution of ``groups`` groups equals one of ``after`` groups (a divisor) whose weights hold each old group's
kernel at that group's input offset inside its merged group and zeros elsewhere: the zeros add exact zeros. It
costs ``groups / after`` times the multiply-adds, and may still run faster (a dense kernel instead of a grouped
one). Used by ONNX int8 (:mod:`.int8`), by ``--tune`` (:mod:`.tune`) and by the TFLite int8 export
(:func:`fill_float_convs`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "block_diagonal",
    "divisors",
    "fill_float_convs",
    "float_grouped_convs",
    "grouped_float_nodes",
    "input_uses",
    "regroup",
]


def divisors(groups: int) -> list[int]:
    """Group counts a ``groups``-group convolution can be merged to, largest first (``groups`` itself included)."""
    return [d for d in range(groups, 0, -1) if groups % d == 0]


def block_diagonal(w: np.ndarray, groups: int, after: int) -> np.ndarray:
    """Weights ``(out, in/groups, *kernel)`` of a ``groups``-group convolution as those of ``after`` groups."""
    if groups % after:
        raise ValueError(f"{after} groups do not divide {groups}")
    out_per_group, per_group, factor = w.shape[0] // groups, w.shape[1], groups // after
    filled = np.zeros((w.shape[0], per_group * factor, *w.shape[2:]), dtype=w.dtype)
    for o in range(w.shape[0]):
        offset = ((o // out_per_group) % factor) * per_group  # the old group's inputs inside the merged group
        filled[o, offset : offset + per_group] = w[o]
    return filled


def regroup(node: Any, weight: Any, groups: int, after: int) -> None:
    """Rewrite one ONNX ``Conv`` (``node``, its weight initializer ``weight``) of ``groups`` groups in place as the
    same convolution of ``after`` groups, its weights filled out block-diagonally."""
    from onnx import numpy_helper

    filled = block_diagonal(numpy_helper.to_array(weight), groups, after)
    weight.CopyFrom(numpy_helper.from_array(filled, weight.name))
    for attr in node.attribute:
        if attr.name == "group":
            attr.i = after


def input_uses(model: Any) -> Counter[str]:
    """How many node inputs of an ONNX model name each tensor."""
    return Counter(i for n in model.graph.node for i in n.input)


def grouped_float_nodes(model: Any) -> list[tuple[Any, Any, int]]:
    """The float grouped convolutions of an ONNX model (weight an initializer used by that node only, neither one
    group nor depthwise): (node, weight initializer, groups)."""
    inits = {t.name: t for t in model.graph.initializer}
    uses = input_uses(model)
    found = []
    for node in model.graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if groups > 1 and weight is not None and weight.dims[1] > 1 and uses.get(weight.name) == 1:
            found.append((node, weight, groups))
    return found


def float_grouped_convs(path: Path) -> list[tuple[str, int]]:
    """(name, groups) of each float grouped convolution of the ONNX file ``path`` (:func:`grouped_float_nodes`)."""
    import onnx

    return [(node.name, groups) for node, _, groups in grouped_float_nodes(onnx.load(str(path)))]


def fill_float_convs(src: Path, dst: Path, target_groups: int) -> list[dict[str, Any]]:
    """Every float grouped convolution of ``src`` (:func:`grouped_float_nodes`) rewritten to ``target_groups``
    groups (the largest divisor of its groups not above it); ``dst`` written.

    Returns:
        One record per rewritten layer: ``name``, ``groups_before``, ``groups_after``.
    """
    import onnx

    model = onnx.load(str(src))
    changed = []
    for node, weight, groups in grouped_float_nodes(model):
        after = next(d for d in divisors(groups) if d <= max(target_groups, 1))
        if after != groups:
            regroup(node, weight, groups, after)
            changed.append({"name": node.name, "groups_before": groups, "groups_after": after})
    onnx.save(model, str(dst))
    return changed
