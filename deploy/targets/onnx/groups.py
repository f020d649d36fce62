"""Grouped convolutions with fewer groups: the same convolution, its weights filled out block-diagonally.

A convolution of ``groups`` groups equals one of ``after`` groups (a divisor) whose weights hold each old group's
kernel at that group's input offset inside its merged group and zeros elsewhere: the zeros add exact zeros. It
costs ``groups / after`` times the multiply-adds, and may still run faster (a dense kernel instead of a grouped
one). Used by ONNX int8 (:mod:`.int8`) and by ``--tune`` (:mod:`.tune`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_diagonal", "divisors"]


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
