"""Heterogeneous convolution (Singh et al., "HetConv", CVPR 2019) and HSNet's improved form.

In a HetConv filter a fraction 1/P of the kernels are 3x3 and the rest are 1x1. The usual implementation, used
here, is the sum of a grouped 3x3 convolution with P groups and a dense pointwise convolution (the 1x1 kernel
then also overlaps the centre tap of the 3x3 kernels, which changes nothing a trained network cannot absorb).

HSNet's improved heterogeneous convolution (its Fig. 2) replaces that pointwise branch by a GhostModule, which
halves the cost of the pointwise part: the paper's remedy for the 1x1 bottleneck.
"""

from __future__ import annotations

import torch
from torch import nn

from hsnet.layers.conv_bn_act import ActLayer, ConvBNAct, fold_bn, fuse_conv_bn
from hsnet.layers.ghost import GhostModule

__all__ = ["HetConv", "ImprovedHetConv"]


def _check_groups(in_chs: int, out_chs: int, part: int) -> None:
    if part < 1 or in_chs % part or out_chs % part:
        raise ValueError(f"HetConv part P={part} must divide in_chs={in_chs} and out_chs={out_chs}")


class HetConv(nn.Module):
    """HetConv (Fig. 1): ``act(bn(gwc3x3(x) + pwc1x1(x)))``.

    ``fuse()`` folds the BatchNorm that follows the sum into both branches (exact: both weights are scaled by
    the BN scale and its shift becomes the grouped branch's bias). The branches are not merged into one
    kernel: that would need a dense 3x3 convolution, which costs more than the two.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of both branches.
        part: P, the number of groups of the 3x3 branch (1/P of each filter's kernels are 3x3).
        act_layer: activation after the BN, or None.
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int = 1, part: int = 4, act_layer: ActLayer = nn.ReLU
    ) -> None:
        super().__init__()
        _check_groups(in_chs, out_chs, part)
        self.gwc = nn.Conv2d(in_chs, out_chs, 3, stride, 1, groups=part, bias=False)
        self.pwc = nn.Conv2d(in_chs, out_chs, 1, stride, 0, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_chs)
        self.act: nn.Module = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.gwc(x) + self.pwc(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BN after the branch sum into both branches; idempotent."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        scale, _ = fold_bn(self.bn)
        self.gwc = fuse_conv_bn(self.gwc, self.bn)  # scale and the whole shift
        self.pwc.weight.mul_(scale.reshape(-1, 1, 1, 1))  # scale only
        self.bn = nn.Identity()


class ImprovedHetConv(nn.Module):
    """Improved heterogeneous convolution (Fig. 2): ``act(bn(gwc3x3(x)) + ghost(x))``.

    The grouped 3x3 branch keeps its own BatchNorm because the Ghost branch normalises inside (its primary
    and cheap operations each have a BN, as in GhostNet). ``fuse()`` comes from the children: every BN folds
    into the convolution before it.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of both branches.
        part: P, the number of groups of the 3x3 branch.
        ghost_ratio: GhostModule ratio (2: half of the pointwise outputs come from the cheap operation).
        act_layer: activation after the sum, or None for a linear (projection) layer.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        part: int = 4,
        ghost_ratio: int = 2,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        _check_groups(in_chs, out_chs, part)
        self.gwc = ConvBNAct(in_chs, out_chs, 3, stride, groups=part, act_layer=None)
        self.ghost = GhostModule(in_chs, out_chs, ratio=ghost_ratio, stride=stride, act_layer=None)
        self.act: nn.Module = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.gwc(x) + self.ghost(x))
