"""The typed training configuration and the named recipes it starts from.

A run is described by one frozen :class:`TrainConfig`. :func:`make_config` starts from a named recipe
(:data:`RECIPES`) and replaces the fields the user set; the result is validated, saved as ``config.json`` in the
run folder and inside every checkpoint, and read back with :func:`config_from_dict` on ``--resume``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hsnet.errors import HSNetError

__all__ = [
    "RECIPES",
    "SCHEDULES",
    "ConfigError",
    "Recipe",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "make_config",
]

SCHEDULES = ("multistep", "cosine")


class ConfigError(HSNetError):
    """A training configuration value that is out of range or inconsistent; the message names the field."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (what is not here does not influence the trained weights, except
    the thread count and device, which can change float rounding).

    Attributes:
        recipe: name of the recipe the values started from (informational).
        model: registry name (``hsnet models``).
        model_args: architecture overrides for the model builder, e.g. ``{"drop_rate": 0.0}``.
        dataset: one of :data:`hsnet.data.DATASETS`.
        data_dir: where the dataset is (None: the default places, see ``hsnet.data.load_arrays``).
        download: fetch the dataset (checksum-verified) if it is not found.
        epochs: number of passes over the training split.
        batch_size: global batch size (split over DDP ranks and ``grad_accum`` micro-batches).
        grad_accum: micro-batches per optimizer step. Each step's batch is split into ``grad_accum`` strided
            micro-batches, exactly the split ``grad_accum`` DDP ranks get, so a single process reproduces a
            multi-process run (BatchNorm sees ``batch_size / grad_accum`` images at a time).
        lr: peak learning rate (after warm-up).
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: L2 weight decay (SGD's coupled form).
        decay_norm_bias: apply weight decay to BatchNorm parameters and biases too (the paper's recipe does;
            modern recipes exempt them).
        schedule: ``"multistep"`` (divide by ``1 / gamma`` at each milestone epoch) or ``"cosine"`` (per iteration
            down to ``min_lr`` at the end).
        milestones: epochs (0-based: the first epoch run at the reduced rate) of the multistep schedule.
        gamma: multistep factor.
        min_lr: final learning rate of the cosine schedule.
        warmup_epochs: linear warm-up length in epochs, updated every iteration (0 = none).
        label_smoothing: cross-entropy label smoothing.
        augment: random crop with ``crop_padding`` zero padding plus horizontal flip on the training split.
        crop_padding: padding of the random crop.
        flip: random horizontal flip (with ``augment``).
        input_size: square model input side; images are resized to it once.
        in_chans: model input channels (gray images are repeated).
        mean: per-channel normalization mean (None: the dataset's known statistics, else measured on the
            training split).
        std: per-channel normalization std (same rule).
        seed: seeds the model initialisation, data order, augmentation and dropout.
        subset: train on this many images of the training split (a fixed, class-balanced pick) for quick runs.
        test_subset: evaluate on this many images of the test split.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: CPU threads of torch's intra-op pool (None: torch's default).
        workers: batches prepared ahead by a background thread (0: prepared inline).
        channels_last: NHWC memory format for model and input (faster for these models on CPU, see
            docs/results.md).
        eval_batch_size: batch size of evaluation (per rank).
        out: run folder (informational: the folder actually used is the one given at run time).
    """

    recipe: str = "cifar-paper"
    model: str = "hsnet"
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "cifar100"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 200
    batch_size: int = 128
    grad_accum: int = 1
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_bias: bool = True
    schedule: str = "multistep"
    milestones: tuple[int, ...] = (60, 120, 160)
    gamma: float = 0.2
    min_lr: float = 0.0
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: bool = True
    crop_padding: int = 4
    flip: bool = True
    input_size: int = 32
    in_chans: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    device: str = "auto"
    threads: int | None = None
    workers: int = 0
    channels_last: bool = True
    eval_batch_size: int = 256
    out: str = ""

    def __post_init__(self) -> None:
        _check(self)


def _check(c: TrainConfig) -> None:
    """Validate value ranges and consistency; every message names the field and what is valid."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    from hsnet.registry import model_info

    model_info(c.model)  # an unknown name fails first, with close matches, before any data is looked for
    for name in ("epochs", "batch_size", "grad_accum", "input_size", "in_chans", "eval_batch_size"):
        value = getattr(c, name)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        need(ok, f"{name} must be an integer >= 1, got {value!r}")
    need(c.lr > 0, f"lr must be positive, got {c.lr}")
    need(0 <= c.momentum < 1, f"momentum must be in [0, 1), got {c.momentum}")
    need(not c.nesterov or c.momentum > 0, "nesterov needs a positive momentum")
    need(c.weight_decay >= 0, f"weight_decay must be >= 0, got {c.weight_decay}")
    need(c.schedule in SCHEDULES, f"unknown schedule {c.schedule!r}; valid: {', '.join(SCHEDULES)}")
    need(list(c.milestones) == sorted(c.milestones), f"milestones must be increasing, got {list(c.milestones)}")
    need(all(m >= 1 for m in c.milestones), f"milestones must be epochs >= 1, got {list(c.milestones)}")
    need(0 < c.gamma <= 1, f"gamma must be in (0, 1], got {c.gamma}")
    need(0 <= c.min_lr <= c.lr, f"min_lr must be in [0, lr], got {c.min_lr}")
    need(0 <= c.warmup_epochs <= c.epochs, f"warmup_epochs must be in [0, epochs={c.epochs}], got {c.warmup_epochs}")
    need(0 <= c.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {c.label_smoothing}")
    need(c.crop_padding >= 0, f"crop_padding must be >= 0, got {c.crop_padding}")
    need(c.in_chans in (1, 3), f"in_chans must be 1 or 3, got {c.in_chans}")
    for name in ("mean", "std"):
        value = getattr(c, name)
        need(value is None or len(value) in (1, c.in_chans), f"{name} needs 1 or in_chans={c.in_chans} values")
    need(c.std is None or min(c.std) > 0, f"std must be positive, got {c.std}")
    for name in ("subset", "test_subset", "threads"):
        value = getattr(c, name)
        need(value is None or value >= 1, f"{name} must be >= 1, got {value}")
    need(c.workers >= 0, f"workers must be >= 0, got {c.workers}")
    need(c.batch_size % c.grad_accum == 0, f"batch_size {c.batch_size} is not divisible by grad_accum {c.grad_accum}")
    need(
        c.device == "auto" or c.device == "cpu" or c.device == "cuda" or c.device.startswith("cuda:"),
        f"unknown device {c.device!r}; valid: auto, cpu, cuda, cuda:N",
    )


@dataclass(frozen=True)
class Recipe:
    """A named starting point: field values of :class:`TrainConfig` plus why they were chosen."""

    name: str
    summary: str
    values: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "cifar-paper",
            "Table 4's recipe: SGD 0.9, lr 0.1 / 5 at epochs 60, 120, 160, wd 5e-4, 200 epochs, batch 128, "
            "1 warm-up epoch, crop+flip",
            {},  # the TrainConfig defaults are this recipe
        ),
        Recipe(
            "modern",
            "cosine schedule, label smoothing 0.1, Nesterov, no weight decay on BatchNorm and biases",
            {
                "schedule": "cosine",
                "label_smoothing": 0.1,
                "nesterov": True,
                "decay_norm_bias": False,
                "milestones": (),
            },
        ),
        Recipe(
            "fashion-quick",
            "the modern recipe shortened for Fashion-MNIST on a CPU: 12 epochs, cosine, batch 128",
            {
                "dataset": "fashion-mnist",
                "epochs": 12,
                "schedule": "cosine",
                "label_smoothing": 0.1,
                "nesterov": True,
                "decay_norm_bias": False,
                "milestones": (),
                "weight_decay": 5e-4,
            },
        ),
    )
}


def make_config(recipe: str = "cifar-paper", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a named recipe with ``overrides`` replacing its values.

    Raises:
        ConfigError: unknown recipe or field name (listing the valid ones) or an invalid value.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    values = {**RECIPES[recipe].values, **overrides, "recipe": recipe}
    return config_from_dict(values)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-able values (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from :func:`config_to_dict`'s output (fields absent from ``data`` take their defaults).

    Raises:
        ConfigError: an unknown field or an invalid value.
    """
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}")
    values = dict(data)
    for name in ("milestones", "mean", "std"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    if values.get("model_args") is not None:
        values["model_args"] = dict(values["model_args"])
    try:
        return TrainConfig(**values)
    except TypeError as e:  # a value of the wrong kind, e.g. a string where a number belongs
        raise ConfigError(f"invalid config: {e}") from None
