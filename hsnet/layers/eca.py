"""ECA: Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

Global average pooling, a 1-D convolution across neighbouring channels whose kernel size adapts to the channel
count, a sigmoid gate, and a channel-wise rescale. No dimensionality reduction, ``k`` parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ECA", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """Adaptive kernel size of ECA-Net (its Eq. 12): the odd number nearest to ``|log2(C) + b| / gamma``.

    Implemented as the authors' code does: truncate, then round an even result up to the next odd number.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention gate.

    Args:
        channels: number of channels of the input (sets the adaptive kernel size).
        kernel_size: override the adaptive kernel size (must be odd).
    """

    def __init__(self, channels: int, kernel_size: int | None = None) -> None:
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else kernel_size
        if k % 2 != 1:
            raise ValueError(f"ECA kernel_size must be odd, got {k}")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).flatten(1).unsqueeze(1)  # (N, 1, C): channels become the 1-D axis
        y = self.gate(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # back to (N, C, 1, 1)
        return x * y
