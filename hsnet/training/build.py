"""Small builders a run is assembled from: device, data, model, optimizer, learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hsnet.errors import HSNetError
from hsnet.registry import create_model
from hsnet.training.config import ConfigError, TrainConfig

__all__ = [
    "RunData",
    "build_data",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "lr_factor",
    "resolve_device",
]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); under DDP ``cuda`` means the
    process's local GPU.

    Raises:
        ConfigError: CUDA asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch ({torch.__version__}) has no usable CUDA")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


@dataclass
class RunData:
    """The training and test splits, resized and held in memory, with what the model needs to know about them."""

    train: object  # hsnet.data.loader.ArrayDataset
    test: object
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build_data(config: TrainConfig) -> RunData:
    """Load both splits of ``config.dataset``, pick the subsets and resize them to the model input.

    Normalization is ``config.mean``/``std`` if set, else the dataset's known statistics, else statistics measured
    on the training split (an image folder).

    Raises:
        hsnet.data.DataError: missing or malformed data (one line naming the file).
        ConfigError: train and test splits disagree on the classes.
    """
    from hsnet.data import channel_stats, dataset_stats, load_arrays
    from hsnet.data.loader import make_dataset

    # An image folder is decoded straight to the input size (the other datasets have a fixed size of their own).
    size = {"image_size": config.input_size} if config.dataset == "folder" else {}
    train = load_arrays(config.dataset, "train", data_dir=config.data_dir, download=config.download, **size)
    test = load_arrays(config.dataset, "test", data_dir=config.data_dir, **size)
    if train.classes != test.classes:
        raise ConfigError(
            f"{config.dataset}: the train split has classes {list(train.classes)[:5]}... but the test split "
            f"{list(test.classes)[:5]}..."
        )
    mean, std = config.mean, config.std
    if mean is None or std is None:
        known = dataset_stats(config.dataset) or channel_stats(train)
        mean = known[0] if mean is None else mean
        std = known[1] if std is None else std
    mean, std = _per_channel(mean, config.in_chans), _per_channel(std, config.in_chans)
    common = {"input_size": config.input_size, "in_chans": config.in_chans, "mean": mean, "std": std}
    return RunData(
        train=make_dataset(train, subset=config.subset, subset_seed=config.seed, **common),
        test=make_dataset(test, subset=config.test_subset, subset_seed=config.seed, **common),
        classes=train.classes,
        mean=mean,
        std=std,
    )


def _per_channel(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Statistics with one value per model input channel: gray values are repeated; RGB values reduced to gray take
    the luminance weights (an approximation for the std)."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    return (sum(w * v for w, v in zip((0.299, 0.587, 0.114), values, strict=True)),)


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The registered model with ``num_classes`` outputs, initialised from ``config.seed``.

    Raises:
        HSNetError: unknown model name (with suggestions) or invalid ``model_args``.
        ConfigError: the model takes another number of input channels than ``config.in_chans``.
    """
    torch.manual_seed(config.seed)
    try:
        model = create_model(config.model, num_classes=num_classes, **config.model_args)
    except TypeError as e:  # an override the builder does not accept
        raise HSNetError(f"invalid model_args for {config.model}: {e}") from None
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != config.in_chans:
        raise ConfigError(f"{config.model} takes {first_conv.in_channels}-channel input; in_chans is {config.in_chans}")
    return model


def _is_norm_or_bias(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or isinstance(module, nn.modules.batchnorm._NormBase)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with the config's momentum and weight decay; BatchNorm parameters and biases are exempt from weight decay
    unless ``decay_norm_bias``."""
    if config.decay_norm_bias:
        groups: list[dict] = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:
        decay, no_decay = [], []
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.requires_grad:
                    (no_decay if _is_norm_or_bias(module, name, p) else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at optimizer step ``step`` (0-based, over the whole run) as a fraction of ``config.lr``.

    Linear warm-up over the first ``warmup_epochs`` (per iteration, from ``1 / warmup_steps``), then either the
    multistep factor ``gamma ** (milestones passed)`` (whole epochs, counted from 0, warm-up epochs included, as
    in the paper's recipe) or a per-iteration cosine from 1 to ``min_lr / lr`` over the remaining steps.
    """
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "multistep":
        epoch = step // steps_per_epoch
        return config.gamma ** sum(1 for m in config.milestones if epoch >= m)
    total = config.epochs * steps_per_epoch
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = config.min_lr / config.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration scheduler (call ``step()`` after every optimizer step) following :func:`lr_factor`.

    Its ``state_dict`` is plain (the factor is a function of the step count), so checkpoints stay weights-only.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step, steps_per_epoch))
