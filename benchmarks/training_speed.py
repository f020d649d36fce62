"""Training throughput (images/s) of HSNet and its baselines on this CPU, with and without channels-last.

One training step is what :func:`hsnet.training.train_one_epoch` does per batch: forward, cross-entropy, backward,
SGD with momentum and weight decay, on random normalized input (data loading is not included). Configurations are
measured in interleaved rounds (every configuration once per round, in a rotated order) so that a burst of load
from another tenant of a shared machine hits all of them alike; each round's first steps are burn-in. Reported:
the median step time and its distribution-free 95 % interval, images/s of wall time, and images per CPU-second
(process CPU time, all threads), which is the more stable figure on a shared machine.

Run::

    hsnet bench training-speed                                # Table 4 baselines + HSNet, 32x32, batch 128
    hsnet bench training-speed --models hsnet --threads 1 --rounds 5 --out runs/bench
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.environment import collect_environment, machine_line
from benchmarks.stats import summarize
from hsnet.registry import create_model, model_info
from hsnet.toolbox.atomic import atomic_write_json, atomic_write_text
from hsnet.toolbox.progress import log
from hsnet.toolbox.tables import markdown_table

__all__ = ["DEFAULT_MODELS", "SpeedResult", "measure_training_speed", "speed_table"]

DEFAULT_MODELS = (
    "hsnet",
    "ghostnet_100",
    "mobilenetv2_100",
    "shufflenetv2_100",
    "cifar_mobilenetv1",
    "cifar_mobilenetv2",
    "cifar_shufflenetv1",
    "cifar_shufflenetv2",
    "cifar_squeezenet",
)


@dataclass
class SpeedResult:
    """Training speed of one model in one memory format.

    Attributes:
        model: registry name.
        channels_last: NHWC memory format for weights and input.
        step_s: median wall time of one training step.
        step_ci95: 95 % interval of that median (None with fewer than 6 steps).
        images_per_s: batch / step_s.
        images_per_cpu_s: batch / median CPU time of a step (all threads of the process).
        steps: number of measured steps.
    """

    model: str
    channels_last: bool
    step_s: float
    step_ci95: tuple[float, float] | None
    images_per_s: float
    images_per_cpu_s: float
    steps: int


class _Stepper:
    """One model with its optimizer and a fixed random batch."""

    def __init__(self, name: str, channels_last: bool, batch_size: int, input_size: int, num_classes: int) -> None:
        torch.manual_seed(0)
        self.model = create_model(name, num_classes=num_classes).train()
        self.x = torch.randn(batch_size, 3, input_size, input_size)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, num_classes, (batch_size,))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.loss = nn.CrossEntropyLoss()

    def step(self) -> tuple[float, float]:
        """One training step; returns (wall seconds, process CPU seconds)."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.x), self.y).backward()
        self.opt.step()
        return time.perf_counter() - wall, time.process_time() - cpu


def measure_training_speed(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    input_size: int = 32,
    batch_size: int = 128,
    num_classes: int = 10,
    formats: Sequence[bool] = (False, True),
    rounds: int = 3,
    steps: int = 3,
    burn_in: int = 1,
    show_progress: bool = True,
) -> list[SpeedResult]:
    """Measure training steps of every (model, channels_last) pair in ``rounds`` interleaved rounds.

    Args:
        models: registry names.
        input_size: square input side.
        batch_size: images per step.
        num_classes: classifier width.
        formats: which channels_last settings to measure.
        rounds: interleaved rounds; each measures ``steps`` steps of every configuration after ``burn_in``.
        steps: measured steps per configuration and round.
        burn_in: unmeasured steps per configuration and round (allocator and oneDNN primitive caches).

    Raises:
        hsnet.registry.UnknownModelError: an unknown model name.
    """
    for name in models:
        model_info(name)
    configs = [(name, cl) for name in models for cl in formats]
    steppers = {c: _Stepper(c[0], c[1], batch_size, input_size, num_classes) for c in configs}
    samples: dict[tuple[str, bool], list[tuple[float, float]]] = {c: [] for c in configs}
    for r in range(rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for config in order:
            stepper = steppers[config]
            for _ in range(burn_in):
                stepper.step()
            samples[config] += [stepper.step() for _ in range(steps)]
        if show_progress:
            log(f"training speed: round {r + 1}/{rounds} done")
    results = []
    for (name, cl), pairs in samples.items():
        wall = summarize([w for w, _ in pairs])
        cpu = summarize([c for _, c in pairs])
        results.append(
            SpeedResult(name, cl, wall.median, wall.ci95, batch_size / wall.median, batch_size / cpu.median, len(pairs))
        )
    return results


def speed_table(results: Sequence[SpeedResult], context: str) -> str:
    """A markdown table: one row per model, NCHW and channels-last side by side, the faster one marked."""
    by_model: dict[str, dict[bool, SpeedResult]] = {}
    for r in results:
        by_model.setdefault(r.model, {})[r.channels_last] = r
    rows = []
    for name, pair in by_model.items():
        cells: list[str] = [name]
        for cl in (False, True):
            r = pair.get(cl)
            cells += ["-", "-"] if r is None else [f"{r.images_per_s:.0f}", f"{r.images_per_cpu_s:.0f}"]
        if len(pair) == 2:
            ratio = pair[True].images_per_cpu_s / pair[False].images_per_cpu_s
            cells.append(f"{ratio:.2f}x")
        else:
            cells.append("-")
        rows.append(cells)
    headers = ["model", "NCHW img/s", "NCHW img/CPU-s", "NHWC img/s", "NHWC img/CPU-s", "NHWC / NCHW (CPU)"]
    return markdown_table(headers, rows) + f"\n\n{context}\n"


def write_training_speed(
    names: Sequence[str], *, input_size: int, batch_size: int, rounds: int, steps: int, out: Path
) -> tuple[str, Path]:
    """Measure :func:`measure_training_speed` and write ``training_speed_<size>px_b<batch>_t<threads>.json`` and
    ``.md`` under ``out`` (atomically); return the Markdown table and the common path stem."""
    import os

    env = collect_environment()
    results = measure_training_speed(list(names), input_size=input_size, batch_size=batch_size, rounds=rounds,
                                     steps=steps)  # fmt: skip
    context = (
        f"Training step (forward, cross-entropy, backward, SGD momentum) on random {input_size}x{input_size} input, "
        f"batch {batch_size}, 10 classes, fp32, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; {machine_line(env)}; median of "
        f"{rounds} x {steps} steps."
    )
    data: dict[str, Any] = {
        "input_size": input_size,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "environment": env,
        "results": [asdict(r) for r in results],
    }
    stem = Path(out) / f"training_speed_{input_size}px_b{batch_size}_t{torch.get_num_threads()}"
    atomic_write_json(stem.with_suffix(".json"), data)
    table = speed_table(results, context)
    atomic_write_text(stem.with_suffix(".md"), table)
    return table, stem
