"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

Written from the paper's Table 1 and its reference implementation's conventions (channel rounding to multiples
of 4, SE reduction 1/4 rounded to 4 with a hard-sigmoid gate, a 1x1 conv head of 1280 with bias, dropout 0.2).
GhostNet 1.0x with 1000 classes has 5.18 M parameters and 141 M multiply-adds at 224x224; with a 100-class
head
it is the "GhostNet 4.00 M / 149.23 M" row of HSNet's Table 4 (see docs/hsnet.md for the FLOP convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct, make_divisible
from hsnet.layers.ghost import GhostModule
from hsnet.layers.se import SqueezeExcite
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.paper import table4_reference
from hsnet.models.registry import Reference, register_model

__all__ = ["GhostBottleneck", "GhostNet", "GhostNetConfig", "ghostnet_100"]


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: Ghost(expand, ReLU) -> [depthwise stride 2] -> [SE] -> Ghost(project) + shortcut."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel: int, stride: int, se_ratio: float) -> None:
        super().__init__()
        self.ghost1 = GhostModule(in_chs, mid_chs, act_layer=nn.ReLU)
        self.conv_dw: nn.Module = (
            ConvBNAct(mid_chs, mid_chs, dw_kernel, stride, groups=mid_chs, act_layer=None)
            if stride > 1
            else nn.Identity()
        )
        self.se: nn.Module = (
            SqueezeExcite(mid_chs, make_divisible(mid_chs * se_ratio, 4)) if se_ratio > 0 else nn.Identity()
        )
        self.ghost2 = GhostModule(mid_chs, out_chs, act_layer=None)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_chs == out_chs and stride == 1
            else nn.Sequential(
                ConvBNAct(in_chs, in_chs, dw_kernel, stride, groups=in_chs, act_layer=None),
                ConvBNAct(in_chs, out_chs, 1, act_layer=None),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.se(self.conv_dw(self.ghost1(x))))
        return y + self.shortcut(x)


class GhostNet(Classifier):
    """GhostNet: stem, nine stages of Ghost bottlenecks, 1x1 conv, pooled 1x1-conv head, classifier."""

    def __init__(self, cfg: GhostNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        w = cfg.width
        in_chs = make_divisible(16 * w, 4)
        self.stem = ConvBNAct(3, in_chs, 3, 2)
        stages: list[nn.Module] = []
        for stage in cfg.stages:
            blocks = []
            for k, exp, out, se, s in stage:
                out_chs = make_divisible(out * w, 4)
                blocks.append(GhostBottleneck(in_chs, make_divisible(exp * w, 4), out_chs, k, s, se))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.final_chs = make_divisible(cfg.final_chs * w, 4)
        stages.append(ConvBNAct(in_chs, self.final_chs, 1))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(self.final_chs, cfg.head_chs, 1, bias=True)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(cfg.head_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act2(self.conv_head(self.global_pool(x))).flatten(1)
        return x if pre_logits else self.classifier(self.dropout(x))


@dataclass(frozen=True)
class GhostNetConfig:
    """GhostNet variant: width multiplier and the stage table (kernel, expansion, out, SE ratio, stride)."""

    width: float = 1.0
    stages: tuple[tuple[tuple[int, int, int, float, int], ...], ...] = (
        ((3, 16, 16, 0, 1),),
        ((3, 48, 24, 0, 2),),
        ((3, 72, 24, 0, 1),),
        ((5, 72, 40, 0.25, 2),),
        ((5, 120, 40, 0.25, 1),),
        ((3, 240, 80, 0, 2),),
        (
            (3, 200, 80, 0, 1),
            (3, 184, 80, 0, 1),
            (3, 184, 80, 0, 1),
            (3, 480, 112, 0.25, 1),
            (3, 672, 112, 0.25, 1),
        ),
        ((5, 672, 160, 0.25, 2),),
        ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
    )
    final_chs: int = 960
    head_chs: int = 1280
    drop_rate: float = 0.2


def _create(cfg: GhostNetConfig, num_classes: int, **overrides: Any) -> GhostNet:
    model = GhostNet(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="ghostnet",
    paper="Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020",
    num_classes=1000,
    input_size=224,
    params=5_182_508,
    macs=141_150_512,
    input_sizes=(224, 32),
    references=(
        Reference(
            params=5.2e6,
            macs=141e6,
            num_classes=1000,
            input_size=224,
            source="GhostNet paper, Table 7 (GhostNet 1.0x: 5.2 M params, 141 M FLOPs, i.e. multiply-adds)",
        ),
        table4_reference("ghostnet_100", params_rtol=0.01, flops_rtol=0.015),
    ),
    description="GhostNet 1.0x (ImageNet definition; Table 4's GhostNet with a 100-class head)",
)
def ghostnet_100(*, num_classes: int = 1000, **overrides: Any) -> GhostNet:
    """GhostNet 1.0x."""
    return _create(GhostNetConfig(width=1.0), num_classes, **overrides)
