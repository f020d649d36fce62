"""Channel shuffle (ShuffleNet, Zhang et al., CVPR 2018): interleave channels across groups."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChannelShuffle", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Reorder channels (g, c/g) -> (c/g, g) so the next grouped layer sees every group.

    Written with ``unflatten``/``flatten`` rather than ``x.size()`` arithmetic so that ``torch.export``
    and the converters see static reshapes.
    """
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle`, so profilers and exporters see it as a layer."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
