"""Convolution + BatchNorm + activation, the unit every architecture here is built from, and BN folding."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ConvBNAct", "fold_bn", "fuse_conv_bn", "make_divisible"]

ActLayer = Callable[[], nn.Module] | None


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90 % of it.

    This is the rounding used by MobileNetV2/V3 and GhostNet reference code; channel counts must match it
    exactly to reproduce the published parameter counts.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def fold_bn(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (scale, shift) such that ``bn(y) == y * scale + shift`` per channel, in eval mode."""
    std = torch.sqrt(bn.running_var + bn.eps)
    weight = bn.weight if bn.affine else torch.ones_like(std)
    bias = bn.bias if bn.affine else torch.zeros_like(std)
    scale = weight / std
    return scale, bias - bn.running_mean * scale


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d | nn.Conv1d, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Conv2d | nn.Conv1d:
    """Return a new convolution (with bias) computing ``bn(conv(x))`` using BN's running statistics."""
    scale, shift = fold_bn(bn)
    fused = type(conv)(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(conv_bias * scale + shift)
    return fused


class ConvBNAct(nn.Module):
    """``act(bn(conv(x)))`` with "same" padding; ``fuse()`` folds the BN into the convolution.

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: square kernel size.
        stride: stride.
        groups: convolution groups (``in_chs`` for depthwise).
        act_layer: activation factory, or None for no activation.
        bias: give the convolution a bias (only for models whose reference code has one before BN).
        bn: False for a plain convolution (+ activation), as in the non-BN reference models.
        padding: explicit padding; defaults to ``kernel_size // 2``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act_layer: ActLayer = nn.ReLU,
        *,
        bias: bool = False,
        bn: bool = True,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=bias or not bn)
        self.bn: nn.Module = nn.BatchNorm2d(out_chs) if bn else nn.Identity()
        self.act: nn.Module = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold BatchNorm into the convolution (eval-mode statistics); idempotent."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()
