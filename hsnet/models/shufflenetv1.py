"""ShuffleNet (V1): Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile
Devices", CVPR 2018 (arXiv:1707.01083).

Reconstructed from the paper (Fig. 2 units, Table 1 layout) and checked against the authors' reference code
(megvii-model/ShuffleNet-Series, ``ShuffleNetV1/network.py`` and ``blocks.py``):

- Unit (Fig. 2b/c): grouped 1x1 conv + BN + ReLU -> channel shuffle -> 3x3 depthwise conv + BN (no ReLU)
  -> grouped 1x1 conv + BN; the shortcut is the identity (add, then ReLU) or, in the first unit of a stage,
  a 3x3 stride-2 average pool whose output is concatenated in front of the main branch (then ReLU). The
  bottleneck has a quarter of the unit's output channels; in a concatenating unit the main branch makes
  ``out - in`` channels.
- ImageNet layout (Table 1, g=3, 1.0x): 3x3 stride-2 conv (24) + BN + ReLU, 3x3 stride-2 max pool, stages of
  4/8/4 units with 240/480/960 channels, global average pool, fully connected layer.
- "For Stage 2, we do not apply group convolution on the first pointwise layer because the number of input
  channels is relatively small": as in the reference code, only the first unit of Stage 2 (24 input channels)
  has an ungrouped first 1x1 conv; the other units of Stage 2 are grouped.
- Differences from the reference code that change no parameter or multiply-add: our :class:`ChannelShuffle`
  is the paper's (g, n) -> (n, g) transpose whereas the reference code reshapes to (n, g) and transposes (the
  inverse permutation; both interleave every group); ReLU is applied to the concatenation rather than to the
  main branch only (identical, since the pooled input is already non-negative). The reference classifier has
  no bias; ours has one (+1000 parameters, 0.05 %) so that ``reset_classifier`` keeps the layout.

The CIFAR variant (``cifar_shufflenetv1``) follows ``models/shufflenet.py`` of weiaicunzai/pytorch-cifar100:
the stem is a stride-1 3x3 conv (no max pool), every conv has a bias (also those followed by BN), and the
first 1x1 conv of Stage 2 is grouped too (that code's stage test never fires), g=3, 240/480/960 channels.
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

__all__ = ["ShuffleNetV1", "ShuffleNetV1Config", "ShuffleV1Unit", "cifar_shufflenetv1", "shufflenetv1_g3_100"]

_PAPER = "Zhang et al., ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices, CVPR 2018"


class ShuffleV1Unit(nn.Module):
    """ShuffleNet unit (Fig. 2b: stride 1, residual add; Fig. 2c: stride 2, average-pool shortcut + concat).

    Args:
        in_chs: input channels.
        out_chs: output channels of the unit (after the concatenation for a stride-2 unit).
        stride: 1 (residual add, needs ``in_chs == out_chs``) or 2 (downsampling, concatenation).
        groups: groups of the pointwise convolutions and of the channel shuffle.
        first_groups: groups of the first pointwise convolution (1 for the paper's first Stage-2 unit).
        bias: give every convolution a bias (the CIFAR reference code does).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, groups: int, first_groups: int, *, bias: bool = False
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise HSNetError(f"ShuffleV1Unit stride must be 1 or 2, got {stride}")
        if stride == 1 and in_chs != out_chs:
            raise HSNetError(f"a stride-1 ShuffleV1Unit needs in_chs == out_chs, got {in_chs} -> {out_chs}")
        self.downsample = stride == 2
        mid_chs = out_chs // 4
        branch_chs = out_chs - in_chs if self.downsample else out_chs
        self.conv_pw = ConvBNAct(in_chs, mid_chs, 1, groups=first_groups, bias=bias)
        self.shuffle = ChannelShuffle(groups)
        self.conv_dw = ConvBNAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act_layer=None, bias=bias)
        self.conv_pwl = ConvBNAct(mid_chs, branch_chs, 1, groups=groups, act_layer=None, bias=bias)
        self.shortcut: nn.Module = nn.AvgPool2d(3, 2, 1) if self.downsample else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv_dw(self.shuffle(self.conv_pw(x))))
        if self.downsample:
            return self.act(torch.cat([self.shortcut(x), out], dim=1))
        return self.act(out + x)


class ShuffleNetV1(Classifier):
    """ShuffleNet V1: stem, three stages of :class:`ShuffleV1Unit`, global pool, linear classifier.

    Args:
        cfg: architecture variant.
        num_classes: classifier width.
    """

    def __init__(self, cfg: ShuffleNetV1Config, num_classes: int = 1000) -> None:
        super().__init__()
        if len(cfg.stage_chs) != len(cfg.depths):
            raise HSNetError(f"stage_chs {cfg.stage_chs} and depths {cfg.depths} must have the same length")
        self.num_classes = num_classes
        self.stem = ConvBNAct(3, cfg.stem_chs, 3, cfg.stem_stride, bias=cfg.conv_bias)
        self.stem_pool: nn.Module = nn.MaxPool2d(3, 2, 1) if cfg.stem_pool else nn.Identity()
        stages: list[nn.Module] = []
        in_chs = cfg.stem_chs
        for stage_idx, (out_chs, depth) in enumerate(zip(cfg.stage_chs, cfg.depths, strict=True)):
            units = []
            for unit_idx in range(depth):
                ungrouped = stage_idx == 0 and unit_idx == 0 and not cfg.group_first_pw
                units.append(
                    ShuffleV1Unit(
                        in_chs,
                        out_chs,
                        2 if unit_idx == 0 else 1,
                        cfg.groups,
                        1 if ungrouped else cfg.groups,
                        bias=cfg.conv_bias,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(in_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem_pool(self.stem(x)))


@dataclass(frozen=True)
class ShuffleNetV1Config:
    """A ShuffleNet V1 variant.

    Attributes:
        stage_chs: output channels of each stage (Table 1 row for the chosen ``groups``, times the width).
        depths: units per stage (the first of each downsamples).
        groups: groups of the pointwise convolutions.
        stem_chs: channels of the 3x3 stem convolution.
        stem_stride: stride of the stem convolution (1 for 32x32 CIFAR inputs).
        stem_pool: 3x3 stride-2 max pool after the stem.
        group_first_pw: group the first 1x1 conv of Stage 2 too (the paper and reference code do not).
        conv_bias: biases on every convolution (CIFAR reference code).
        drop_rate: dropout before the classifier (neither reference uses one; default 0).
    """

    stage_chs: tuple[int, ...]
    depths: tuple[int, ...] = (4, 8, 4)
    groups: int = 3
    stem_chs: int = 24
    stem_stride: int = 2
    stem_pool: bool = True
    group_first_pw: bool = False
    conv_bias: bool = False
    drop_rate: float = 0.0


_CONFIGS = {
    "shufflenetv1_g3_100": ShuffleNetV1Config(stage_chs=(240, 480, 960)),
    "cifar_shufflenetv1": ShuffleNetV1Config(
        stage_chs=(240, 480, 960), stem_stride=1, stem_pool=False, group_first_pw=True, conv_bias=True
    ),
}


def _create(cfg: ShuffleNetV1Config, num_classes: int, **overrides: Any) -> ShuffleNetV1:
    model = ShuffleNetV1(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="shufflenetv1",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=1_865_728,
    macs=137_460_672,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=None,
            macs=140e6,
            num_classes=1000,
            input_size=224,
            source="Zhang et al. CVPR 2018, Table 2 (ShuffleNet 1x, g=3: 140 MFLOPs, i.e. multiply-adds)",
        ),
        Reference(
            params=1.9e6,
            macs=138e6,
            num_classes=1000,
            input_size=224,
            source="megvii-model/ShuffleNet-Series ShuffleNetV1/README.md "
            "(ShuffleNetV1 1.0x, group=3: 138M FLOPs, 1.9M params)",
            params_rtol=0.03,  # the README rounds to 0.1 M
        ),
        Reference(
            params=1_864_728,
            macs=None,
            num_classes=1000,
            input_size=224,
            source="megvii-model/ShuffleNet-Series ShuffleNetV1/network.py (model_size='1.0x', group=3): "
            "parameter count of that definition (bias-free classifier)",
        ),
    ),
    description="ShuffleNet V1 1.0x, g=3 (ImageNet layout, Table 1)",
)
def shufflenetv1_g3_100(*, num_classes: int = 1000, **overrides: Any) -> ShuffleNetV1:
    """ShuffleNet V1 1.0x with 3 groups (240/480/960 channels)."""
    return _create(_CONFIGS["shufflenetv1_g3_100"], num_classes, **overrides)


@register_model(
    family="shufflenetv1",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=1_012_108,
    macs=41_693_952,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference("cifar_shufflenetv1", params_rtol=0.015),  # the table's 1.00 M for a 1.012 M definition
        cifar100_repo_reference("models/shufflenet.py", 1.012e6, 41.7e6),
    ),
    description="ShuffleNet V1 g=3 for 32x32 CIFAR inputs (pytorch-cifar100 definition)",
)
def cifar_shufflenetv1(*, num_classes: int = 100, **overrides: Any) -> ShuffleNetV1:
    """ShuffleNet V1 g=3 as defined by pytorch-cifar100 (stride-1 stem, no max pool)."""
    return _create(_CONFIGS["cifar_shufflenetv1"], num_classes, **overrides)
