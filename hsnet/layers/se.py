"""Squeeze-and-excitation (Hu et al., CVPR 2018) with the hard-sigmoid gate of MobileNetV3 and GhostNet."""

from __future__ import annotations

import torch
from torch import nn

from hsnet.layers.conv_bn_act import ConvBNAct

__all__ = ["SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """``x * hardsigmoid(expand(relu(reduce(avgpool(x)))))`` with biased 1x1 convolutions and no BatchNorm.

    Args:
        chs: channels of the gated feature map.
        rd_chs: bottleneck channels (each family rounds its own way).
    """

    def __init__(self, chs: int, rd_chs: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = ConvBNAct(chs, rd_chs, 1, act_layer=nn.ReLU, bn=False)
        self.expand = ConvBNAct(rd_chs, chs, 1, act_layer=nn.Hardsigmoid, bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.expand(self.reduce(self.pool(x)))
