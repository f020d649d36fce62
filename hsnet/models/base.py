"""The interface every classifier in the zoo offers: features, head, and a replaceable classifier."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch
from torch import nn

from hsnet.errors import HSNetError

__all__ = ["Classifier", "apply_overrides", "init_weights"]

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
    return dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]


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
