"""How a model registers itself: :func:`register_model` records a :class:`ModelInfo` beside each entry point.

The lookups (``create_model``, ``list_models``, ``model_info``) are in :mod:`hsnet.registry`, which imports this
package (and so every model file) first; the model files import only this module, so no import runs in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hsnet.errors import HSNetError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "ModelInfo",
    "Reference",
    "UnknownModelError",
    "DuplicateModelError",
    "register_model",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel statistics of the CIFAR-100 training set, as used by the pytorch-cifar100 recipe.
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568393)


class UnknownModelError(HSNetError, KeyError):
    """Raised for a model name that is not registered; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateModelError(HSNetError, ValueError):
    """Raised when a second builder is registered under an existing name."""


@dataclass(frozen=True)
class Reference:
    """A figure published for a model, with where it comes from and how close we must be.

    Attributes:
        params: published parameter count (absolute number), or None if the source gives none.
        macs: published multiply-adds at ``input_size`` (absolute number), or None.
        num_classes: classifier width the published figures are for.
        input_size: input resolution the published MACs are for.
        source: citation (paper table or reference implementation).
        params_rtol: relative tolerance for the parameter count.
        macs_rtol: relative tolerance for the multiply-adds.
        flops: published FLOPs in the full convention of :mod:`hsnet.profiling` (MACs plus BN, activations,
            pooling and element-wise ops), or None.
        flops_rtol: relative tolerance for ``flops``.
    """

    params: float | None
    macs: float | None
    num_classes: int
    input_size: int
    source: str
    params_rtol: float = 0.005
    macs_rtol: float = 0.03
    flops: float | None = None
    flops_rtol: float = 0.03


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model declares about itself; tests check every figure against measurement.

    Attributes:
        name: registry name (stable, documented in docs/models.md).
        family: architecture family, e.g. ``"mobilenetv2"``.
        paper: citation of the paper the architecture is written from.
        num_classes: default classifier width.
        input_size: default (and declared) square input resolution.
        input_sizes: every resolution the model is tested at (always includes ``input_size``).
        params: exact parameter count at ``num_classes``.
        macs: exact conv/linear multiply-adds for one ``input_size`` image at ``num_classes``.
        mean: per-channel normalization mean the model expects (travels with weights).
        std: per-channel normalization std.
        references: published figures this definition reproduces.
        description: one line for ``hsnet models``.
    """

    name: str
    family: str
    paper: str
    num_classes: int
    input_size: int
    params: int
    macs: int
    input_sizes: tuple[int, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    references: tuple[Reference, ...] = ()
    description: str = ""
    builder: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)

    @property
    def test_sizes(self) -> tuple[int, ...]:
        """Resolutions to test at: the declared one first, then the others."""
        return (self.input_size, *(s for s in self.input_sizes if s != self.input_size))


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    paper: str,
    num_classes: int,
    input_size: int,
    params: int,
    macs: int,
    **info: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model entry point under its function name.

    The entry point must accept ``num_classes`` plus keyword overrides and return an ``nn.Module``.

    Raises:
        DuplicateModelError: if the name is already registered.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise DuplicateModelError(f"model {name!r} is already registered (by {_REGISTRY[name].family})")
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            paper=paper,
            num_classes=num_classes,
            input_size=input_size,
            params=params,
            macs=macs,
            builder=fn,
            **info,
        )
        return fn

    return decorator
