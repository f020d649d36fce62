"""From decoded images to model input: channel adaptation, resizing, normalization, and dataset statistics.

One resizing rule serves evaluation, calibration and training: bilinear ``torch.nn.functional.interpolate``
(``align_corners=False``) with antialiasing when an image shrinks, gray replicated to three channels, RGB reduced to
one by ITU-R 601 luminance (PIL's ``"L"`` weights). A resized or reduced image is rounded back to 8-bit pixels, as
an app's image buffer holds it and as the training loader stores it, so every path feeds a model the same values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hsnet.data.base import DataError, ImageArrays
from hsnet.registry import CIFAR100_MEAN, CIFAR100_STD

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "balanced_indices",
    "channel_stats",
    "dataset_stats",
    "resize_uint8",
    "stat_tensor",
    "to_model_input",
]

# Fashion-MNIST train split, measured here with channel_stats (one gray channel, replicated for RGB models).
FASHION_MNIST_MEAN = (0.2860405969887955,) * 3
FASHION_MNIST_STD = (0.35302424451492254,) * 3
# MNIST train split: the widely used figures (0.1307, 0.3081); not re-measured, MNIST is not installed here.
MNIST_MEAN = (0.1307,) * 3
MNIST_STD = (0.3081,) * 3
# CIFAR-10 train split (population std over all pixels, not the often-copied 0.2023/0.1994/0.2010, which are not
# the dataset's std); widely quoted figures, not re-measured: CIFAR-10 is not installed here. The CIFAR-100 ones
# live in hsnet.registry.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_STATS = {
    "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
    "mnist": (MNIST_MEAN, MNIST_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}
_LUMA = (0.299, 0.587, 0.114)
_CHUNK = 1024  # images converted at a time: bounds the float intermediates


def dataset_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """Known per-channel (mean, std) for 3-channel input of a named dataset, or None (e.g. ``"folder"``)."""
    return _STATS.get(name)


def _check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DataError(f"expected uint8 images (N, H, W, 1|3), got {images.dtype} {images.shape}")
    return images


def _check_chans(in_chans: int) -> None:
    if in_chans not in (1, 3):
        raise DataError(f"in_chans must be 1 or 3, got {in_chans}")


def _float_nchw(images: np.ndarray, size: int, in_chans: int, *, expand: bool = True) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1] at ``size`` x ``size``, on the 8-bit grid (k / 255); gray stays 1 channel
    unless ``expand``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    changed = False
    if x.shape[1] == 3 and in_chans == 1:
        x = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        changed = True
    if tuple(x.shape[2:]) != (size, size):
        shrink = x.shape[2] > size or x.shape[3] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        changed = True
    if changed:  # back to 8-bit pixels (the antialias kernel can overshoot by a hair)
        x = x.clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)
    if expand and x.shape[1] == 1 and in_chans == 3:
        x = x.expand(-1, 3, -1, -1)
    return x


def stat_tensor(values: Sequence[float], in_chans: int, what: str) -> torch.Tensor:
    """Per-channel mean or std as a float32 (1, C, 1, 1) tensor, checked: 1 or ``in_chans`` values, std > 0.

    Raises:
        DataError: wrong number of values, or a non-positive std.
    """
    values = tuple(float(v) for v in values)
    if len(values) not in (1, in_chans):
        raise DataError(f"{what} has {len(values)} values; give 1 or {in_chans} (one per input channel)")
    if what == "std" and min(values) <= 0:
        raise DataError(f"std must be positive, got {values}")
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def to_model_input(
    images: np.ndarray,
    *,
    input_size: int,
    in_chans: int = 3,
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """Turn decoded images into normalized model input.

    Args:
        images: uint8 (N, H, W, C) with C = 1 or 3 (or (N, H, W) for gray).
        input_size: output side; images are resized to ``input_size`` x ``input_size`` (aspect ratio not kept).
        in_chans: channels the model takes, 1 or 3.
        mean: per-channel mean in 0..1 units, ``in_chans`` values (or 1, broadcast).
        std: per-channel std, same length rules.

    Returns:
        float32 (N, in_chans, input_size, input_size), C-contiguous: ``(pixel / 255 - mean) / std``.

    Raises:
        DataError: wrong dtype or shape, ``in_chans`` not 1 or 3, mean/std of the wrong length.
    """
    images = _check_images(images)
    _check_chans(in_chans)
    m, s = stat_tensor(mean, in_chans, "mean"), stat_tensor(std, in_chans, "std")
    out = np.empty((images.shape[0], in_chans, input_size, input_size), dtype=np.float32)
    for i in range(0, images.shape[0], _CHUNK):
        x = _float_nchw(images[i : i + _CHUNK], input_size, in_chans)
        out[i : i + _CHUNK] = ((x - m) / s).numpy()
    return out


def resize_uint8(images: np.ndarray, input_size: int, in_chans: int = 3) -> torch.Tensor:
    """Resize once for training: uint8 NHWC -> uint8 NCHW at ``input_size`` (the pixels :func:`to_model_input`
    normalizes). Gray input stays one channel even for ``in_chans=3`` (the loader replicates it per batch, a third
    of the memory); RGB input with ``in_chans=1`` is reduced to luminance here.
    """
    images = _check_images(images)
    _check_chans(in_chans)
    chans = 1 if images.shape[3] == 1 or in_chans == 1 else 3
    out = torch.empty((images.shape[0], chans, input_size, input_size), dtype=torch.uint8)
    for i in range(0, images.shape[0], _CHUNK):
        chunk = images[i : i + _CHUNK]
        if chunk.shape[1:3] == (input_size, input_size) and chunk.shape[3] == chans:
            out[i : i + _CHUNK] = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
        else:
            out[i : i + _CHUNK] = _float_nchw(chunk, input_size, in_chans, expand=False).mul_(255.0).round_().byte()
    return out


def channel_stats(arrays: ImageArrays) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of a split in 0..1 units, one value per stored channel."""
    n_chans = arrays.images.shape[3]
    total = np.zeros(n_chans)
    total_sq = np.zeros(n_chans)
    for i in range(0, len(arrays), 4096):
        x = arrays.images[i : i + 4096].reshape(-1, n_chans).astype(np.float64) / 255.0
        total += x.sum(0)
        total_sq += (x * x).sum(0)
    count = arrays.images[..., 0].size
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def balanced_indices(labels: np.ndarray, count: int | None = None, *, seed: int = 0) -> np.ndarray:
    """A fixed, seeded, class-balanced ordering of ``range(len(labels))``, truncated to ``count``.

    Each class is shuffled (numpy PCG64 seeded by ``seed``), then classes are interleaved round-robin in class order,
    so any prefix holds every class equally (to within one) while classes last. Same labels and seed, same indices,
    on any machine.

    Raises:
        DataError: ``count`` is negative or larger than the number of images.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if count is not None and not 0 <= count <= n:
        raise DataError(f"cannot pick {count} images from a split of {n}")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    # Rank of each image inside its class decides its round; ties broken by class order.
    rank = np.empty(n, dtype=np.int64)
    cls = np.empty(n, dtype=np.int64)
    for c, idx in enumerate(per_class):
        rank[idx] = np.arange(idx.shape[0])
        cls[idx] = c
    order = np.concatenate(per_class) if per_class else np.zeros(0, dtype=np.int64)
    order = order[np.lexsort((cls[order], rank[order]))]
    return order[:count] if count is not None else order
