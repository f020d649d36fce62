"""Human-readable reports of profiles: plain-text tables that carry what was measured and how."""

from __future__ import annotations

import platform
from collections.abc import Sequence

import torch

from hsnet.profiling.counter import FLOP_CATEGORIES, KINDS, Profile
from hsnet.toolbox.tables import format_count, format_table

__all__ = ["format_profile", "measurement_context"]


def measurement_context(input_shape: Sequence[int]) -> str:
    """One line saying what a count was measured on (counts are exact, so no threads or timing apply)."""
    shape = "x".join(str(s) for s in input_shape)
    return (
        f"input {shape} (batch {input_shape[0]}), fp32, eval mode, torch {torch.__version__}, "
        f"{platform.machine()}; MACs = conv/linear multiply-adds, FLOPs = MACs + bias, BN (2/elem), "
        "activations, pooling, element-wise ops"
    )


def _share(part: int, total: int) -> str:
    return f"{100 * part / total:5.1f} %" if total else "    - "


def format_profile(profile: Profile, name: str, *, layers: bool = False) -> str:
    """Summary, FLOP categories, breakdown by operator kind and (optionally) the per-layer table."""
    p = profile
    out = [
        f"{name}: {format_count(p.params)} parameters, {format_count(p.macs)} MACs, "
        f"{format_count(p.flops)} FLOPs, {format_count(p.activations)} activations "
        f"({p.activation_bytes / 2**20:.1f} MiB fp32), "
        f"peak live activations {p.peak_activation_bytes / 2**20:.1f} MiB",
        f"measured on {measurement_context(p.input_shape)}",
        "",
        format_table(
            ["FLOPs by category", "FLOPs", "share"],
            [
                (c, format_count(p.flops_by_category[c]), _share(p.flops_by_category[c], p.flops))
                for c in FLOP_CATEGORIES
            ],
        ),
        "",
        format_table(
            ["operator kind", "MACs", "MAC share", "params", "param share"],
            [
                (
                    k,
                    format_count(p.macs_by_kind[k]),
                    _share(p.macs_by_kind[k], p.macs),
                    format_count(p.params_by_kind[k]),
                    _share(p.params_by_kind[k], p.params),
                )
                for k in KINDS
            ],
        ),  # fmt: skip
    ]
    if layers:
        rows = [
            (lay.name, lay.type, lay.kind, "x".join(map(str, lay.output_shape[1:])), f"{lay.params:,}",
             f"{lay.macs:,}", f"{lay.flops:,}")
            for lay in p.layers
        ]  # fmt: skip
        out += [
            "",
            format_table(["layer", "type", "kind", "output", "params", "MACs", "FLOPs"], rows, "lllrrrr"),
        ]
    return "\n".join(out)
