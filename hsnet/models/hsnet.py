"""HSNet (Yu, Gao, Hu, "Lightweight image classification network based on heterogeneous convolution").

Only the paper's abstract, figure captions and tables survive (see docs/hsnet.md), so the architecture is a
reconstruction from what they state:

* GhostModules replace part of the pointwise convolutions, combined with heterogeneous convolution into the
  *improved heterogeneous convolution* (Fig. 2): a grouped 3x3 branch with P groups plus a Ghost branch.
* Two residual modules built from it: **ResHetModel_A** keeps resolution with an identity shortcut,
  **ResHetModel_B** downsamples (stride-2 depthwise convolution) with a projected shortcut.
* Table 1: a stem 224 -> 112, four stages halving the resolution (112 -> 56 -> 28 -> 14 -> 7), ECA attention
  in stages 1-3 and not in stage 4, and a 1280-wide head after global pooling (as in GhostNet / MobileNetV3).

Widths, depths, expansions and P are chosen so that the 100-class network has the paper's 3.00 M parameters
and 231.87 M FLOPs at 224x224 in the full counting convention (hsnet.profiling); docs/hsnet.md lists each
choice and the alternatives. Every choice is a field of :class:`HSNetConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct
from hsnet.layers.eca import ECA
from hsnet.layers.hetconv import ImprovedHetConv
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.paper import table4_reference
from hsnet.models.registry import CIFAR100_MEAN, CIFAR100_STD, register_model

__all__ = ["HSNet", "HSNetConfig", "ResHetModelA", "ResHetModelB", "StageSpec", "hsnet"]


class ResHetModelA(nn.Module):
    """ResHetModel_A: improved HetConv (expand, ReLU) -> [ECA] -> improved HetConv (project) + identity.

    Args:
        chs: input and output channels.
        mid_chs: expanded width.
        part: P of both heterogeneous convolutions.
        eca: add ECA attention on the expanded features.
    """

    def __init__(self, chs: int, mid_chs: int, part: int, eca: bool) -> None:
        super().__init__()
        self.expand = ImprovedHetConv(chs, mid_chs, part=part, act_layer=nn.ReLU)
        self.attn: nn.Module = ECA(mid_chs) if eca else nn.Identity()
        self.project = ImprovedHetConv(mid_chs, chs, part=part, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.attn(self.expand(x)))


class ResHetModelB(nn.Module):
    """ResHetModel_B: improved HetConv (expand) -> depthwise 3x3 stride 2 -> [ECA] -> improved HetConv
    (project), plus a depthwise-stride-2 + pointwise projection shortcut (as in GhostNet's bottleneck).

    Args:
        in_chs: input channels.
        mid_chs: expanded width.
        out_chs: output channels.
        part: P of both heterogeneous convolutions.
        eca: add ECA attention on the expanded features.
        stride: spatial stride (2 in every stage of Table 1).
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, part: int, eca: bool, stride: int = 2) -> None:
        super().__init__()
        self.expand = ImprovedHetConv(in_chs, mid_chs, part=part, act_layer=nn.ReLU)
        self.conv_dw = ConvBNAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act_layer=None)
        self.attn: nn.Module = ECA(mid_chs) if eca else nn.Identity()
        self.project = ImprovedHetConv(mid_chs, out_chs, part=part, act_layer=None)
        self.shortcut = nn.Sequential(
            ConvBNAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=None),
            ConvBNAct(in_chs, out_chs, 1, act_layer=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.project(self.attn(self.conv_dw(self.expand(x))))


@dataclass(frozen=True)
class StageSpec:
    """One stage of Table 1: a ResHetModel_B (stride 2) followed by ``depth - 1`` ResHetModel_A blocks.

    Attributes:
        out_chs: output width of the stage.
        depth: number of blocks (>= 1).
        expansion: expanded width of every block, as a multiple of its input width.
        eca: ECA attention in the stage's blocks (Table 1's ECA column).
    """

    out_chs: int
    depth: int
    expansion: float
    eca: bool


@dataclass(frozen=True)
class HSNetConfig:
    """HSNet variant. Defaults are the reconstruction documented in docs/hsnet.md.

    Attributes:
        stem_chs: width of the stride-2 3x3 stem (224 -> 112).
        stages: the four stages of Table 1.
        part: P of every heterogeneous convolution (groups of its 3x3 branch).
        final_chs: width of the 1x1 conv-BN-ReLU after stage 4.
        head_chs: width of the pooled 1x1 conv head (1280 in Table 1).
        drop_rate: dropout before the classifier.
    """

    stem_chs: int = 16
    stages: tuple[StageSpec, ...] = (
        StageSpec(24, 2, 3.0, True),
        StageSpec(48, 3, 3.0, True),
        StageSpec(96, 3, 3.25, True),
        StageSpec(192, 2, 4.0, False),
    )
    part: int = 8
    final_chs: int = 1280
    head_chs: int = 1280
    drop_rate: float = 0.2

    def __post_init__(self) -> None:
        if len(self.stages) < 1 or any(s.depth < 1 for s in self.stages):
            raise ValueError("HSNetConfig needs at least one stage, each of depth >= 1")


def _mid(chs: int, expansion: float, part: int) -> int:
    """Expanded width rounded to a multiple of P so both HetConv group constraints hold."""
    return max(part, int(round(chs * expansion / part)) * part)


class HSNet(Classifier):
    """HSNet: stem, four stages of ResHetModel_B/A blocks, 1x1 conv, pooled 1280-wide head, classifier."""

    def __init__(self, cfg: HSNetConfig, num_classes: int = 100) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.stem = ConvBNAct(3, cfg.stem_chs, 3, 2)
        in_chs = cfg.stem_chs
        stages: list[nn.Module] = []
        for spec in cfg.stages:
            blocks: list[nn.Module] = [
                ResHetModelB(in_chs, _mid(in_chs, spec.expansion, cfg.part), spec.out_chs, cfg.part, spec.eca)
            ]
            mid = _mid(spec.out_chs, spec.expansion, cfg.part)
            blocks += [ResHetModelA(spec.out_chs, mid, cfg.part, spec.eca) for _ in range(spec.depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_chs = spec.out_chs
        self.stages = nn.Sequential(*stages)
        self.final_conv = ConvBNAct(in_chs, cfg.final_chs, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(cfg.final_chs, cfg.head_chs, 1, bias=True)
        self.act_head = nn.ReLU()
        self.dropout = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(cfg.head_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act_head(self.conv_head(self.global_pool(x))).flatten(1)
        return x if pre_logits else self.classifier(self.dropout(x))


def _create(cfg: HSNetConfig, num_classes: int, **overrides: Any) -> HSNet:
    model = HSNet(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="hsnet",
    paper="Yu, Gao, Hu, Lightweight image classification network based on heterogeneous convolution",
    num_classes=100,
    input_size=224,
    params=3_032_262,
    macs=216_613_424,
    input_sizes=(224, 32),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(table4_reference("hsnet", params_rtol=0.03, flops_rtol=0.03),),
    description="HSNet (reconstructed): improved HetConv + GhostModule residual blocks with ECA",
)
def hsnet(*, num_classes: int = 100, **overrides: Any) -> HSNet:
    """HSNet as reconstructed in docs/hsnet.md; ``overrides`` replace fields of :class:`HSNetConfig`."""
    return _create(HSNetConfig(), num_classes, **overrides)
