"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Reconstructed: ResNet-50 of the paper's Table 1 -- a 7x7/2 stem, a 3x3/2 max-pool, and four stages of 3, 4, 6
and 3 bottleneck blocks (1x1 reduce, 3x3, 1x1 expand by 4) with 256, 512, 1024 and 2048 output channels,
projection (1x1 convolution + BatchNorm) shortcuts where the shape changes, global average pooling and one
fully connected layer.

Two definitions are registered. ``resnet50`` is the paper's: each stage strides its first 1x1 convolution,
3.86 G multiply-adds measured against the 3.8e9 of the paper's Table 1. ``resnet50_v1_5`` is the torchvision
reference implementation ("ResNet v1.5", stride on the 3x3: 4.09 G multiply-adds), the model HSNet's Table 3
profiles (4.09 G). Both have 25,557,032 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.registry import IMAGENET_MEAN, IMAGENET_STD, Reference, register_model

__all__ = ["Bottleneck", "ResNet", "ResNetConfig", "resnet50", "resnet50_v1_5"]

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"


class Bottleneck(nn.Module):
    """Bottleneck residual block: 1x1 reduce, 3x3, 1x1 expand, added to the (projected) input, then ReLU.

    Args:
        in_chs: input channels.
        mid_chs: channels of the 1x1 reduce and 3x3 convolutions.
        out_chs: output channels (``expansion * mid_chs``).
        stride: stride of the block.
        stride_in_1x1: put the stride on the first 1x1 convolution (paper) instead of the 3x3 (v1.5).
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, stride: int = 1, *, stride_in_1x1: bool) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvBNAct(in_chs, mid_chs, 1, stride_1x1)
        self.conv2 = ConvBNAct(mid_chs, mid_chs, 3, stride_3x3)
        self.conv3 = ConvBNAct(mid_chs, out_chs, 1, act_layer=None)
        self.shortcut: nn.Module = (
            ConvBNAct(in_chs, out_chs, 1, stride, act_layer=None) if stride != 1 or in_chs != out_chs else nn.Identity()
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet(Classifier):
    """ResNet with bottleneck blocks.

    Args:
        cfg: architecture definition.
        num_classes: number of output classes.
    """

    def __init__(self, cfg: ResNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            ConvBNAct(3, cfg.stem_chs, 7, 2),
            nn.MaxPool2d(3, 2, padding=1),
        )
        stages: list[nn.Module] = []
        chs = cfg.stem_chs
        for index, (depth, width) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            out_chs = width * cfg.expansion
            blocks: list[nn.Module] = []
            for block in range(depth):
                stride = 2 if block == 0 and index > 0 else 1
                blocks.append(Bottleneck(chs, width, out_chs, stride, stride_in_1x1=cfg.stride_in_1x1))
                chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


@dataclass(frozen=True)
class ResNetConfig:
    """One bottleneck-ResNet definition.

    Attributes:
        depths: blocks per stage.
        widths: bottleneck (3x3) channels per stage; block outputs are ``expansion`` times wider.
        stem_chs: channels of the 7x7 stem convolution.
        expansion: output/bottleneck channel ratio of a block.
        stride_in_1x1: stride each stage's first block on its 1x1 reduce (paper) rather than its 3x3 (v1.5).
        drop_rate: dropout before the classifier (0 in the reference).
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_chs: int = 64
    expansion: int = 4
    stride_in_1x1: bool = False
    drop_rate: float = 0.0


_CFGS: dict[str, ResNetConfig] = {
    "resnet50": ResNetConfig(stride_in_1x1=True),
    "resnet50_v1_5": ResNetConfig(stride_in_1x1=False),
}


def _create(cfg: ResNetConfig, num_classes: int, **overrides: Any) -> ResNet:
    model = ResNet(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="resnet",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=25_557_032,
    macs=3_857_973_248,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=25_557_032,
            macs=3.8e9,
            num_classes=1000,
            input_size=224,
            source="He et al., Table 1 (ResNet-50: 3.8e9 FLOPs, i.e. multiply-adds); parameter count of the "
            "reference definition (torchvision resnet50: 25,557,032)",
        ),
    ),
    description="ResNet-50 as in the paper (stride on each stage's first 1x1 convolution)",
)
def resnet50(*, num_classes: int = 1000, **overrides: Any) -> ResNet:
    """ResNet-50 of the paper (stride on the 1x1 reduce convolution)."""
    return _create(_CFGS["resnet50"], num_classes, **overrides)


@register_model(
    family="resnet",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=25_557_032,
    macs=4_089_184_256,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=25_557_032,
            macs=4.09e9,
            num_classes=1000,
            input_size=224,
            source="torchvision resnet50 (ResNet50_Weights.IMAGENET1K_V1: num_params 25557032, GFLOPS 4.09, "
            "counted as multiply-adds; stride on the 3x3, 'ResNet v1.5')",
        ),
        Reference(
            params=None,
            macs=None,
            flops=4.09e9,
            num_classes=10,
            input_size=224,
            source="HSNet paper, Table 3 (CIFAR-10: ResNet50 4.09 G FLOPs)",
        ),
    ),
    description="ResNet-50 v1.5 (stride on the 3x3, torchvision's definition; HSNet's Table 3 row)",
)
def resnet50_v1_5(*, num_classes: int = 1000, **overrides: Any) -> ResNet:
    """ResNet-50 v1.5, the torchvision definition that HSNet's Table 3 profiles."""
    return _create(_CFGS["resnet50_v1_5"], num_classes, **overrides)
