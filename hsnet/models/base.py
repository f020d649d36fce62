"""The interface every classifier in the zoo offers: features, head, and a replaceable classifier."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch
from torch import nn

from hsnet.errors import HSNetError

__all__ = ["Classifier", "apply_overrides", "check_override_type", "init_weights"]

C = TypeVar("C")


def apply_overrides(cfg: C, overrides: dict[str, Any]) -> C:
    """Return the frozen config dataclass ``cfg`` with ``overrides`` replacing its fields.

    Raises:
        HSNetError: naming the unknown keys and listing the valid ones.
    """
    valid = [f.name for f in dataclasses.fields(cfg)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise HSNetError(
            f"unknown override(s) {', '.join(unknown)} for {type(cfg).__name__}; valid: {', '.join(valid)}"
        )
    for key, value in overrides.items():
        check_override_type(type(cfg).__name__, key, value, getattr(cfg, key))
    return dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]


def check_override_type(owner: str, key: str, value: Any, default: Any) -> None:
    """An override must have its default's type (an int passes for a float; a list for a tuple); ``None``
    defaults take anything.

    Raises:
        HSNetError: ``owner argument key='abc': takes a float (default 0.2), got str``.
    """
    if default is None:
        return
    want: type = float if isinstance(default, float) else list if isinstance(default, tuple) else type(default)
    if want is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif want is list:
        fits = isinstance(value, (list, tuple))
    else:
        fits = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    if not fits:
        shown = repr(default) if len(repr(default)) <= 40 else f"a {type(default).__name__}"
        raise HSNetError(
            f"{owner} argument {key}={value!r}: takes a {want.__name__} (default {shown}), got {type(value).__name__}"
        )


class Classifier(nn.Module):
    """Base class: ``forward(x) == forward_head(forward_features(x))``.

    Subclasses implement :meth:`forward_features` (image -> feature map) and either define ``global_pool``,
    ``drop`` and ``classifier`` for the default :meth:`forward_head` or override it (feature map -> logits, or
    pooled features with ``pre_logits=True``). The final linear layer lives in ``self.classifier`` so
    :meth:`reset_classifier` can swap it.
    """

    num_classes: int
    global_pool: nn.Module
    drop: nn.Module
    classifier: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Default head: ``classifier(drop(global_pool(x)))``; with ``pre_logits`` the pooled features.

        Uses ``global_pool``, ``drop`` and ``classifier``; families with another head override it.
        """
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.classifier(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        old = self.classifier
        if not isinstance(old, nn.Linear):
            raise NotImplementedError(f"{type(self).__name__} must override reset_classifier")
        self.classifier = nn.Linear(old.in_features, num_classes)
        self.num_classes = num_classes


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BatchNorm, small-normal linear layers (reference-code defaults)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
