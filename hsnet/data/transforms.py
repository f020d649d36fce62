"""Batched training augmentations on NCHW tensors: whole batches at once, no per-sample Python loop.

Random numbers always come from an explicit :class:`torch.Generator`, and each random transform is split into
drawing its parameters (``*_params``) and applying them, so a loader can draw one epoch's parameters up front and
index them by sample position (which is what makes a sharded run see the same augmented batch as a single process).
Crop and flip work on any dtype (the loader applies them to uint8, before converting to float).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "crop",
    "crop_params",
    "flip_params",
    "hflip",
    "normalize",
    "random_crop",
    "random_hflip",
]


def crop_params(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample offsets (dy, dx), each int64 (n,) uniform in ``0..2*padding``: where the crop window starts in
    the padded image (``padding`` means no shift)."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    return dy, dx


def crop(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Zero-pad ``x`` (N, C, H, W) by ``padding`` on every side, then cut an H x W window at (dy[i], dx[i]),
    mirrored left-right where ``flip[i]`` is True.

    Equivalent to torchvision's ``RandomCrop(H, padding=padding)`` (fill 0) followed by ``RandomHorizontalFlip``
    for given parameters, done as one gather. Zero is black in pixel units, so apply it before normalization, as
    torchvision's recipe does.
    """
    n, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = F.pad(x, (padding, padding, padding, padding)).reshape(-1)
    ws = torch.arange(w)
    cols = dx.view(n, 1) + (ws if flip is None else torch.where(flip.view(n, 1), w - 1 - ws, ws))
    rows = (dy.view(n, 1) + torch.arange(h)) * wp
    base = (torch.arange(n) * (c * hp * wp)).view(n, 1, 1, 1) + (torch.arange(c) * (hp * wp)).view(1, c, 1, 1)
    return padded[base + rows.view(n, 1, h, 1) + cols.view(n, 1, 1, w)]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`crop` at offsets drawn from ``generator``."""
    return crop(x, *crop_params(x.shape[0], padding, generator), padding)


def flip_params(n: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Per-sample flip decisions, bool (n,), each True with probability ``p``."""
    return torch.rand(n, generator=generator) < p


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples of ``x`` (N, C, H, W) where ``mask`` is True."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """:func:`hflip` with decisions drawn from ``generator``."""
    return hflip(x, flip_params(x.shape[0], generator, p))


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Float ``(x - mean) / std`` per channel; uint8 input is first scaled to 0..1 (``/ 255``)."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    m = torch.tensor(tuple(mean), dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(tuple(std), dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
