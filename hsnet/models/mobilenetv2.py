"""MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.

Reconstructed from the paper's Table 2: a stride-2 3x3 stem with 32 channels, seventeen inverted-residual
blocks given as (expansion t, channels c, repeats n, stride s) rows, a 1x1 convolution to 1280 channels,
global average pooling, dropout and a linear classifier. Each block is 1x1 expansion + BN + ReLU6, 3x3
depthwise + BN + ReLU6, 1x1 linear projection + BN, with an identity shortcut when stride is 1 and the
channel count is unchanged. Definition choices follow the torchvision reference implementation, whose
parameter count (3,504,872) is reproduced exactly: the t=1 block has no expansion convolution, channels are
rounded with ``make_divisible(c * width, 8)``, and the head keeps 1280 channels for widths <= 1. The
paper's Table 4 rounds the count to 3.4 M (TF-slim lists 3.47 M); neither is within rounding of 3,504,872,
so the reference parameter figure is torchvision's and only the paper's 300 M multiply-adds are checked.

``cifar_mobilenetv2`` follows ``models/mobilenetv2.py`` of weiaicunzai/pytorch-cifar100 (the MobileNetV2
row of the HSNet paper's Table 4). Its deliberate differences, kept to reproduce the reference figures: the
stem is a 1x1 convolution with padding 1 and stride 1 (32x32 input becomes 34x34), the sixth stage
(160 channels) has stride 1 instead of 2, every convolution has a bias before its BatchNorm (``nn.Conv2d``
default), the t=1 block keeps its expansion convolution, there is no dropout, and the classifier is a 1x1
convolution after pooling, written here as the equivalent ``nn.Linear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct, make_divisible
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.paper import cifar100_repo_reference, table4_reference
from hsnet.models.registry import CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN, IMAGENET_STD, Reference, register_model

__all__ = ["InvertedResidual", "MobileNetV2", "MobileNetV2Config", "cifar_mobilenetv2", "mobilenetv2_100"]

_PAPER = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018"


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (paper Table 1 / Fig. 3b).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the depthwise convolution.
        expand_ratio: expansion factor t.
        bias: give every convolution a bias before its BatchNorm (pytorch-cifar100 definition).
        expand_always: keep the 1x1 expansion even when t == 1 (pytorch-cifar100); torchvision drops it.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        expand_ratio: int,
        *,
        bias: bool = False,
        expand_always: bool = False,
    ) -> None:
        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.use_res = stride == 1 and in_chs == out_chs
        self.expand: nn.Module = (
            ConvBNAct(in_chs, mid_chs, 1, act_layer=nn.ReLU6, bias=bias)
            if expand_ratio != 1 or expand_always
            else nn.Identity()
        )
        self.dw = ConvBNAct(mid_chs, mid_chs, 3, stride, groups=mid_chs, act_layer=nn.ReLU6, bias=bias)
        self.project = ConvBNAct(mid_chs, out_chs, 1, act_layer=None, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.use_res else out


class MobileNetV2(Classifier):
    """MobileNetV2 classifier.

    Args:
        cfg: architecture definition (see :class:`MobileNetV2Config`).
        num_classes: classifier width.
    """

    def __init__(self, cfg: MobileNetV2Config, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        stem_chs = make_divisible(cfg.stem_chs * cfg.width)
        self.stem = ConvBNAct(
            3,
            stem_chs,
            cfg.stem_kernel,
            cfg.stem_stride,
            act_layer=nn.ReLU6,
            bias=cfg.bias,
            padding=cfg.stem_padding,
        )
        blocks: list[nn.Module] = []
        in_chs = stem_chs
        for t, c, n, s in cfg.stages:
            out_chs = make_divisible(c * cfg.width)
            for i in range(n):
                blocks.append(
                    InvertedResidual(
                        in_chs,
                        out_chs,
                        s if i == 0 else 1,
                        t,
                        bias=cfg.bias,
                        expand_always=cfg.expand_always,
                    )
                )
                in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.num_features = make_divisible(cfg.head_chs * max(1.0, cfg.width))
        self.conv_head = ConvBNAct(in_chs, self.num_features, 1, act_layer=nn.ReLU6, bias=cfg.bias)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))


@dataclass(frozen=True)
class MobileNetV2Config:
    """One MobileNetV2 variant.

    Attributes:
        stages: (expansion t, channels c, repeats n, stride s) rows of the paper's Table 2.
        stem_chs: stem output channels, before width scaling.
        stem_kernel: stem kernel size.
        stem_stride: stem stride.
        stem_padding: stem padding (None: kernel_size // 2).
        head_chs: channels of the last 1x1 convolution.
        width: width multiplier (channels rounded to multiples of 8).
        bias: every convolution has a bias before BN (pytorch-cifar100 definition).
        expand_always: the t=1 block keeps its expansion convolution (pytorch-cifar100 definition).
        drop_rate: dropout before the classifier.
    """

    stages: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    stem_chs: int = 32
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_padding: int | None = None
    head_chs: int = 1280
    width: float = 1.0
    bias: bool = False
    expand_always: bool = False
    drop_rate: float = 0.2


_CFGS: dict[str, MobileNetV2Config] = {
    "mobilenetv2_100": MobileNetV2Config(),
    "cifar_mobilenetv2": MobileNetV2Config(
        stages=(
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 1),
            (6, 320, 1, 1),
        ),
        stem_kernel=1,
        stem_stride=1,
        stem_padding=1,
        bias=True,
        expand_always=True,
        drop_rate=0.0,
    ),
}


def _create(cfg: MobileNetV2Config, num_classes: int, **overrides: Any) -> MobileNetV2:
    model = MobileNetV2(apply_overrides(cfg, overrides), num_classes)
    init_weights(model)
    return model


@register_model(
    family="mobilenetv2",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=3_504_872,
    macs=300_774_272,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=3_504_872,
            macs=300e6,
            num_classes=1000,
            input_size=224,
            source="params: torchvision mobilenet_v2 (documented num_params 3,504,872); "
            "MACs: Sandler et al. 2018, Table 4 (MobileNetV2, 300 M multiply-adds)",
        ),
    ),
    description="MobileNetV2 1.0x, 224x224 ImageNet definition (torchvision-compatible)",
)
def mobilenetv2_100(*, num_classes: int = 1000, **overrides: Any) -> MobileNetV2:
    """MobileNetV2, width 1.0 (paper Table 2)."""
    return _create(_CFGS["mobilenetv2_100"], num_classes, **overrides)


@register_model(
    family="mobilenetv2",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=2_369_380,
    macs=64_947_264,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference("cifar_mobilenetv2", params_rtol=0.01),
        cifar100_repo_reference("models/mobilenetv2.py", 2.369e6, 64.9e6),
    ),
    description="MobileNetV2 1.0x, CIFAR definition of pytorch-cifar100 (1x1 stem, stride-1 stage 6)",
)
def cifar_mobilenetv2(*, num_classes: int = 100, **overrides: Any) -> MobileNetV2:
    """MobileNetV2 for 32x32 inputs, as defined in pytorch-cifar100 ``models/mobilenetv2.py``."""
    return _create(_CFGS["cifar_mobilenetv2"], num_classes, **overrides)
