"""What ``--tune`` shares across targets: where it measures, how it times here, and when a variant is kept.

Here (no ``--remote``), variants are timed in this process, interleaved over rounds in a fresh random order each
round, and compared by their medians. On a ``--remote`` device each variant is a whole artifact, measured there by
:func:`hsnet.devices.cost.costs_on_device`: guest instructions per inference on the emulated device (exact from
run to run), median time on a board. Either way the fastest is kept only when it beats the variant as it is by
more than :data:`MIN_GAIN` (no change for noise).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hsnet.toolbox.progress import log as _log

__all__ = ["MIN_GAIN", "Costs", "TuneSite", "keep_fastest", "time_interleaved", "tune_filling"]

#: A variant must beat the original's cost by more than this to be kept.
MIN_GAIN = 0.05

K = TypeVar("K", bound=Hashable)


def time_interleaved(
    calls: Mapping[K, Callable[[], object]], *, rounds: int = 15, per_round: int = 10, warmup: int = 3
) -> dict[K, float]:
    """Median microseconds per call of each callable, interleaved over ``rounds`` in a fresh random order each
    round (after ``warmup`` untimed calls of each: first calls allocate and pick kernels)."""
    samples: dict[K, list[float]] = {k: [] for k in calls}
    order = list(calls)
    rng = random.Random(0)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            fn = calls[k]
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e6 for k, v in samples.items()}


def keep_fastest(costs: Mapping[K, float], current: K) -> K:
    """The cheapest variant when it beats ``current`` by more than :data:`MIN_GAIN`, else ``current``."""
    best = min(costs, key=costs.__getitem__)
    return best if costs[current] / costs[best] > 1 + MIN_GAIN else current


@dataclass
class Costs:
    """Whole artifacts' costs per inference and what measured them (``unit``: ``us``, ``ms`` or ``instructions``)."""

    costs: dict[Path, float]
    unit: str
    where: str


@dataclass(frozen=True)
class TuneSite:
    """Where ``--tune`` measures: here (``remote`` None) or on a ``--remote`` device."""

    remote: str | None = None
    ssh_options: tuple[str, ...] = ()
    ssh_config: str | None = None

    def device(self) -> Any:
        """The parsed ``--remote`` device (None here).

        Raises:
            hsnet.errors.HSNetError: a malformed device (a usage error).
        """
        if self.remote is None:
            return None
        from hsnet.devices.remote import parse_device

        return parse_device(self.remote, ssh_options=self.ssh_options, ssh_config=self.ssh_config)

    def arch(self) -> str | None:
        """The device's CPU family (aarch64 for the emulated one; a board's from its probe), None here.

        Raises:
            hsnet.errors.ToolFailure: the board cannot be reached.
        """
        device = self.device()
        if device is None:
            return None
        from hsnet.devices.remote import device_arch

        return device_arch(device)

    def whole(self, files: Sequence[Path], runtime: str, load: Callable[[Path], Callable[[], object]] | None) -> Costs:
        """Each artifact file's cost: timed here through ``load(file)`` (a callable running one inference; needed
        here only), or measured on the device.

        Raises:
            hsnet.errors.ToolFailure: the device cannot measure them (one line naming it).
        """
        if self.remote is None:
            if load is None:
                raise ValueError("timing here needs a loader")
            from hsnet.toolbox.machine import cpu_model

            us = time_interleaved({f: load(f) for f in files}, rounds=10, per_round=5)
            return Costs({f: v / 1e3 for f, v in us.items()}, "ms", f"{cpu_model()} (here)")
        from hsnet.devices.cost import costs_on_device

        measured = costs_on_device(self.device(), files, runtime)
        return Costs(measured.costs, measured.unit, measured.device)


def tune_filling(
    groups: Sequence[int],
    build: Callable[[int], tuple[Path, int]],
    site: TuneSite,
    runtime: str,
    load: Callable[[Path], Callable[[], object]] | None,
    *,
    what: str,
    log: Callable[[str], None] = _log,
) -> tuple[Path, dict[str, Any]]:
    """Whole-artifact variants of one rewrite, every grouped convolution filled out block-diagonally to ``g``
    groups (each layer to the largest divisor of its own not above ``g``), for each ``g`` of ``groups``; each
    built, measured at ``site``, the cheapest kept by :func:`keep_fastest` against the graph as it is (``g`` =
    the largest).

    Args:
        groups: the group counts to try, the graph's largest among them (every divisor of it).
        build: writes the variant of ``g`` groups; returns its file and how many layers it changed.
        site, runtime, load: where and how the files are measured (:meth:`TuneSite.whole`).
        what: names the artifact in the log (``tflite/int8``).

    Returns:
        The kept file (the others are deleted) and what was measured (the artifact's ``tuning`` metadata).
    """
    current = max(groups)
    files: dict[int, Path] = {}
    changed: dict[int, int] = {}
    for g in groups:
        log(f"[deploy] {what} --tune: building the variant filled to {g} group(s)")
        files[g], changed[g] = build(g)
    measured = site.whole(list(files.values()), runtime, load)
    cost = {g: measured.costs[f] for g, f in files.items()}
    kept = keep_fastest(cost, current)
    verdict = f" -> filled to {kept} (x{cost[current] / cost[kept]:.2f})" if kept != current else " -> unchanged"
    log(f"[deploy] {what} --tune on {measured.where}: "
        + ", ".join(f"{g} groups {c:.4g} {measured.unit}" for g, c in cost.items()) + verdict)  # fmt: skip
    for g, f in files.items():
        if g != kept:
            f.unlink(missing_ok=True)
    tuning = {
        "rewrite": "grouped convolutions filled to fewer groups (block-diagonal zeros), whole files",
        "where": measured.where,
        "unit": measured.unit,
        "variants": {str(g): round(c, 4) for g, c in cost.items()},
        "layers_changed": {str(g): n for g, n in changed.items()},
        "groups_before": current,
        "groups_after": kept,
        "gain": round(cost[current] / cost[kept], 3),
        "min_gain": MIN_GAIN,
    }
    return files[kept], tuning
