"""ShuffleNet V2: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018 (arXiv:1807.11164).

Reconstructed from the paper (Fig. 3c/d units, Table 5 layout) and checked against torchvision's
``shufflenet_v2_x1_0`` (2,278,604 parameters):

- Basic unit (Fig. 3c): channel split in halves; the first half passes unchanged, the second goes through
  1x1 conv + BN + ReLU -> 3x3 depthwise conv + BN -> 1x1 conv + BN + ReLU; concatenate, channel shuffle
  (2 groups).
- Downsampling unit (Fig. 3d): no split; the left branch is 3x3 stride-2 depthwise conv + BN -> 1x1 conv +
  BN + ReLU, the right branch is the basic unit's branch with a stride-2 depthwise conv; each makes half the
  output channels; concatenate, shuffle.
- ImageNet layout (Table 5, 1.0x): 3x3 stride-2 conv (24) + BN + ReLU, 3x3 stride-2 max pool, stages of 4/8/4
  units with 116/232/464 channels, 1x1 conv to 1024 + BN + ReLU, global average pool, fully connected layer.

The CIFAR variant (``cifar_shufflenetv2``) follows ``models/shufflenetv2.py`` of weiaicunzai/pytorch-cifar100:
the stem is a stride-1 3x3 conv + BN without ReLU and without max pool, every conv has a bias (also those
followed by BN), and the right branch of a downsampling unit keeps its input width until its last 1x1 conv
(``in -> in -> in -> out/2`` instead of ``in -> out/2 -> out/2 -> out/2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.errors import HSNetError
from hsnet.layers import ChannelShuffle, ConvBNAct
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.paper import cifar100_repo_reference, table4_reference
from hsnet.models.registry import CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN, IMAGENET_STD, Reference, register_model

__all__ = ["ShuffleNetV2", "ShuffleNetV2Config", "ShuffleV2Unit", "cifar_shufflenetv2", "shufflenetv2_100"]

_PAPER = "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018"


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit (Fig. 3c for stride 1, Fig. 3d for stride 2).

    Args:
        in_chs: input channels.
        out_chs: output channels (even; each branch makes half).
        stride: 1 (channel split, needs ``in_chs == out_chs``) or 2 (two branches on the whole input).
        wide_down_branch: in a stride-2 unit, keep the right branch at ``in_chs`` until its last 1x1 conv
            (pytorch-cifar100 definition) instead of narrowing it to ``out_chs // 2`` at once (paper).
        bias: give every convolution a bias (the CIFAR reference code does).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, *, wide_down_branch: bool = False, bias: bool = False
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise HSNetError(f"ShuffleV2Unit stride must be 1 or 2, got {stride}")
        if out_chs % 2:
            raise HSNetError(f"ShuffleV2Unit needs an even out_chs, got {out_chs}")
        if stride == 1 and in_chs != out_chs:
            raise HSNetError(f"a stride-1 ShuffleV2Unit needs in_chs == out_chs, got {in_chs} -> {out_chs}")
        self.downsample = stride == 2
        branch_chs = out_chs // 2
        if self.downsample:
            self.branch_left: nn.Module = nn.Sequential(
                ConvBNAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=None, bias=bias),
                ConvBNAct(in_chs, branch_chs, 1, bias=bias),
            )
            right_in, mid_chs = in_chs, in_chs if wide_down_branch else branch_chs
        else:
            self.branch_left = nn.Identity()
            right_in, mid_chs = branch_chs, branch_chs
        self.branch_right = nn.Sequential(
            ConvBNAct(right_in, mid_chs, 1, bias=bias),
            ConvBNAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act_layer=None, bias=bias),
            ConvBNAct(mid_chs, branch_chs, 1, bias=bias),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            left, right = x, x
        else:
            left, right = x.chunk(2, dim=1)
        return self.shuffle(torch.cat([self.branch_left(left), self.branch_right(right)], dim=1))


class ShuffleNetV2(Classifier):
    """ShuffleNet V2: stem, three stages of :class:`ShuffleV2Unit`, 1x1 head conv, global pool, classifier.

    Args:
        cfg: architecture variant.
        num_classes: classifier width.
    """

    def __init__(self, cfg: ShuffleNetV2Config, num_classes: int = 1000) -> None:
        super().__init__()
        if len(cfg.stage_chs) != len(cfg.depths):
            raise HSNetError(f"stage_chs {cfg.stage_chs} and depths {cfg.depths} must have the same length")
        self.num_classes = num_classes
        stem_act = nn.ReLU if cfg.stem_act else None
        self.stem = ConvBNAct(3, cfg.stem_chs, 3, cfg.stem_stride, act_layer=stem_act, bias=cfg.conv_bias)
        self.stem_pool: nn.Module = nn.MaxPool2d(3, 2, 1) if cfg.stem_pool else nn.Identity()
        stages: list[nn.Module] = []
        in_chs = cfg.stem_chs
        for out_chs, depth in zip(cfg.stage_chs, cfg.depths, strict=True):
            units = []
            for unit_idx in range(depth):
                units.append(
                    ShuffleV2Unit(
                        in_chs,
                        out_chs,
                        2 if unit_idx == 0 else 1,
                        wide_down_branch=cfg.wide_down_branch,
                        bias=cfg.conv_bias,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.head = ConvBNAct(in_chs, cfg.head_chs, 1, bias=cfg.conv_bias)
        self.num_features = cfg.head_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(cfg.head_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem_pool(self.stem(x))))


@dataclass(frozen=True)
class ShuffleNetV2Config:
    """A ShuffleNet V2 variant.

    Attributes:
        stage_chs: output channels of each stage (Table 5 column for the width multiplier).
        depths: units per stage (the first of each downsamples).
        stem_chs: channels of the 3x3 stem convolution.
        head_chs: channels of the final 1x1 convolution (conv5).
        stem_stride: stride of the stem convolution (1 for 32x32 CIFAR inputs).
        stem_pool: 3x3 stride-2 max pool after the stem.
        stem_act: ReLU after the stem's BN (the CIFAR reference code has none).
        wide_down_branch: see :class:`ShuffleV2Unit`.
        conv_bias: biases on every convolution (CIFAR reference code).
        drop_rate: dropout before the classifier (neither reference uses one; default 0).
    """

    stage_chs: tuple[int, ...]
    depths: tuple[int, ...] = (4, 8, 4)
    stem_chs: int = 24
    head_chs: int = 1024
    stem_stride: int = 2
    stem_pool: bool = True
    stem_act: bool = True
    wide_down_branch: bool = False
    conv_bias: bool = False
    drop_rate: float = 0.0


_CONFIGS = {
    "shufflenetv2_100": ShuffleNetV2Config(stage_chs=(116, 232, 464)),
    "cifar_shufflenetv2": ShuffleNetV2Config(
        stage_chs=(116, 232, 464),
        stem_stride=1,
        stem_pool=False,
        stem_act=False,
        wide_down_branch=True,
        conv_bias=True,
    ),
}


def _create(cfg: ShuffleNetV2Config, num_classes: int, **overrides: Any) -> ShuffleNetV2:
    model = ShuffleNetV2(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="shufflenetv2",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=2_278_604,
    macs=144_907_992,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=2.3e6,
            macs=146e6,
            num_classes=1000,
            input_size=224,
            source="Ma et al. ECCV 2018, Table 5 (ShuffleNet v2 1x: 146M FLOPs, i.e. multiply-adds; 2.3M weights)",
            params_rtol=0.025,  # the paper rounds to 0.1 M
        ),
        Reference(
            params=2_278_604,
            macs=None,
            num_classes=1000,
            input_size=224,
            source="torchvision shufflenet_v2_x1_0, ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1 num_params",
        ),
    ),
    description="ShuffleNet V2 1.0x (ImageNet layout, Table 5)",
)
def shufflenetv2_100(*, num_classes: int = 1000, **overrides: Any) -> ShuffleNetV2:
    """ShuffleNet V2 1.0x (116/232/464 channels, 1024-channel conv5)."""
    return _create(_CONFIGS["shufflenetv2_100"], num_classes, **overrides)


@register_model(
    family="shufflenetv2",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=1_360_896,
    macs=43_675_520,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference(
            "cifar_shufflenetv2", params_rtol=0.05
        ),  # the table's 1.30 M is truncated from the definition's 1.361 M
        cifar100_repo_reference("models/shufflenetv2.py", 1.361e6, 43.7e6),
    ),
    description="ShuffleNet V2 1.0x for 32x32 CIFAR inputs (pytorch-cifar100 definition)",
)
def cifar_shufflenetv2(*, num_classes: int = 100, **overrides: Any) -> ShuffleNetV2:
    """ShuffleNet V2 1.0x as defined by pytorch-cifar100 (stride-1 stem, no max pool)."""
    return _create(_CONFIGS["cifar_shufflenetv2"], num_classes, **overrides)
