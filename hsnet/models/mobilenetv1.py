"""MobileNet (V1): Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861, 2017.

Reconstructed from the paper's Table 1: a stride-2 3x3 stem convolution with 32 channels, thirteen
depthwise-separable blocks (3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU) widening
64-128-128-256-256-512x6-1024-1024 with stride 2 at the 2nd, 4th, 6th and 12th block, global average
pooling and one fully connected layer. ``mobilenetv1_100`` is the 1.0-width, 224x224 model of Table 8
(4.2 M parameters, 569 M mult-adds); the TF-slim reference implementation lists 4.24 M / 569 M.

``cifar_mobilenetv1`` follows ``models/mobilenet.py`` of weiaicunzai/pytorch-cifar100, the definition behind
the MobileNet row of the HSNet paper's Table 4: the stem convolution has stride 1 (total stride 16, so a
32x32 input ends at 2x2), and every pointwise convolution carries a bias before its
BatchNorm (PyTorch's ``nn.Conv2d`` default in that code). The bias is redundant with BN but counts toward
the reference parameter figure, and ``fuse()`` folds it exactly.
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

__all__ = ["DepthwiseSeparable", "MobileNetV1", "MobileNetV1Config", "cifar_mobilenetv1", "mobilenetv1_100"]

_PAPER = "Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, arXiv 2017"


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU followed by 1x1 pointwise conv + BN + ReLU (paper Fig. 3, right).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the depthwise convolution.
        pw_bias: give the pointwise convolution a bias before its BatchNorm (pytorch-cifar100 definition).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, pw_bias: bool = False) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=nn.ReLU)
        self.pw = ConvBNAct(in_chs, out_chs, 1, act_layer=nn.ReLU, bias=pw_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(Classifier):
    """MobileNet V1 classifier.

    Args:
        cfg: architecture definition (see :class:`MobileNetV1Config`).
        num_classes: classifier width.
    """

    def __init__(self, cfg: MobileNetV1Config, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        stem_chs = make_divisible(cfg.stem_chs * cfg.width)
        self.stem = ConvBNAct(3, stem_chs, 3, cfg.stem_stride, act_layer=nn.ReLU)
        blocks: list[nn.Module] = []
        in_chs = stem_chs
        for out_chs, stride in cfg.blocks:
            out_chs = make_divisible(out_chs * cfg.width)
            blocks.append(DepthwiseSeparable(in_chs, out_chs, stride, pw_bias=cfg.pw_bias))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(in_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


@dataclass(frozen=True)
class MobileNetV1Config:
    """One MobileNet V1 variant.

    Attributes:
        blocks: (output channels, depthwise stride) of each depthwise-separable block, before width scaling.
        stem_chs: stem output channels, before width scaling.
        stem_stride: stem stride (2 on ImageNet, 1 in the CIFAR definition).
        width: width multiplier alpha (channels rounded to multiples of 8).
        pw_bias: pointwise convolutions carry a bias before BN (pytorch-cifar100 definition).
        drop_rate: dropout before the classifier (the paper uses none).
    """

    blocks: tuple[tuple[int, int], ...] = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        *((512, 1),) * 5,
        (1024, 2),
        (1024, 1),
    )
    stem_chs: int = 32
    stem_stride: int = 2
    width: float = 1.0
    pw_bias: bool = False
    drop_rate: float = 0.0


_CFGS: dict[str, MobileNetV1Config] = {
    "mobilenetv1_100": MobileNetV1Config(),
    "cifar_mobilenetv1": MobileNetV1Config(stem_stride=1, pw_bias=True),
}


def _create(cfg: MobileNetV1Config, num_classes: int, **overrides: Any) -> MobileNetV1:
    model = MobileNetV1(apply_overrides(cfg, overrides), num_classes)
    init_weights(model)
    return model


@register_model(
    family="mobilenetv1",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=4_231_976,
    macs=568_740_352,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=4.2e6,
            macs=569e6,
            num_classes=1000,
            input_size=224,
            source="Howard et al. 2017, Table 8 (1.0 MobileNet-224); 4.2 M is rounded to 0.1 M",
            params_rtol=0.012,
        ),
        Reference(
            params=4.24e6,
            macs=569e6,
            num_classes=1000,
            input_size=224,
            source="TF-slim reference implementation, tensorflow/models research/slim/nets/mobilenet_v1.md "
            "(MobileNet_v1_1.0_224)",
        ),
    ),
    description="MobileNet V1 1.0x, 224x224 ImageNet definition",
)
def mobilenetv1_100(*, num_classes: int = 1000, **overrides: Any) -> MobileNetV1:
    """MobileNet V1, width 1.0 (paper Table 1)."""
    return _create(_CFGS["mobilenetv1_100"], num_classes, **overrides)


@register_model(
    family="mobilenetv1",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=3_315_428,
    macs=46_446_592,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference("cifar_mobilenetv1", params_rtol=0.01),
        cifar100_repo_reference("models/mobilenet.py", 3.315e6, 46.4e6),
    ),
    description="MobileNet V1 1.0x, CIFAR definition of pytorch-cifar100 (stride-1 stem)",
)
def cifar_mobilenetv1(*, num_classes: int = 100, **overrides: Any) -> MobileNetV1:
    """MobileNet V1 for 32x32 inputs, as defined in pytorch-cifar100 ``models/mobilenet.py``."""
    return _create(_CFGS["cifar_mobilenetv1"], num_classes, **overrides)
