"""GhostModule (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

A pointwise convolution produces ``ceil(out/ratio)`` intrinsic maps; a cheap depthwise convolution derives the
remaining "ghost" maps from them; the two are concatenated and trimmed to ``out`` channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hsnet.layers.conv_bn_act import ActLayer, ConvBNAct

__all__ = ["GhostModule"]


class GhostModule(nn.Module):
    """Ghost module: primary 1x1 conv-BN(-act) plus cheap depthwise conv-BN(-act), concatenated.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        ratio: 1 / fraction of output channels computed by the primary (pointwise) convolution.
        dw_size: kernel size of the cheap depthwise operation.
        stride: stride of the primary convolution.
        act_layer: activation after both halves, or None (the projection form in GhostNet).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        self.primary_conv = ConvBNAct(in_chs, init_chs, 1, stride, act_layer=act_layer)
        self.cheap_operation = ConvBNAct(
            init_chs, init_chs * (ratio - 1), dw_size, 1, groups=init_chs, act_layer=act_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return torch.cat([x1, x2], dim=1)[:, : self.out_chs]
