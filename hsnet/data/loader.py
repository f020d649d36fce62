"""Training and evaluation batches: a split resized once into memory, batched, shuffled, augmented, sharded.

Reproducibility. Each epoch draws, from one generator seeded by ``(seed, epoch)``, first the permutation of the
dataset, then the crop offsets and flip decisions of every *position* in that permutation. A batch is therefore a
pure function of (seed, epoch, step): a resumed run (``start_step``) sees exactly the batches an uninterrupted run
would.

Sharding (the contract the DDP test relies on). With ``world_size`` W and per-rank batch size B, the permutation is
cut like :class:`torch.utils.data.DistributedSampler` does: rank r takes positions r, r + W, r + 2W, ...; its step-k
batch is its positions k*B .. k*B + B - 1. Hence the union over ranks of step k is exactly positions k*B*W ..
(k + 1)*B*W - 1 of the permutation, with the same augmentation: **the batch a single process with batch size B*W
sees at step k** (same samples, same crops and flips; only their order inside the batch differs). With
``drop_last=True`` this holds for every step (incomplete global batches are dropped). With ``drop_last=False`` and
N not divisible by W, the permutation is padded by repeating its first positions (as DistributedSampler does) so
that every rank runs the same number of steps; the last step then holds up to W - 1 repeated samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from hsnet.data.base import DataError, ImageArrays
from hsnet.data.preprocess import balanced_indices, resize_uint8, stat_tensor
from hsnet.data.transforms import crop, crop_params, flip_params

__all__ = ["ArrayDataset", "BatchIterator", "epoch_generator", "make_dataset", "make_loader"]


class ArrayDataset(Dataset):
    """A split held in memory as uint8 NCHW at the model's input size; float conversion happens per batch.

    Gray images are stored with one channel and replicated to ``in_chans`` per batch (a third of the memory: 60000
    Fashion-MNIST images at 32x32 take 61 MB instead of 737 MB as float32 RGB).

    Attributes:
        images: uint8 (N, 1 or in_chans, input_size, input_size).
        labels: int64 (N,).
        classes, name, split: as in :class:`~hsnet.data.ImageArrays`.
        input_size, in_chans, mean, std: what batches are made into.
        indices: for a subset, the indices into the original split it was taken from (else None).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        classes: tuple[str, ...],
        name: str,
        split: str,
        input_size: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        indices: np.ndarray | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.classes, self.name, self.split = classes, name, split
        self.input_size, self.in_chans = input_size, in_chans
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.indices = indices
        m, s = stat_tensor(self.mean, in_chans, "mean"), stat_tensor(self.std, in_chans, "std")
        self._scale = (1.0 / (255.0 * s)).expand(1, in_chans, 1, 1)
        self._shift = (-m / s).expand(1, in_chans, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1 or in_chans, S, S) -> normalized float32 (B, in_chans, S, S), contiguous."""
        # one fused pass: (x / 255 - mean) / std == x * scale + shift; broadcasting replicates gray channels
        shape = (x.shape[0], self.in_chans, *x.shape[2:])
        return torch.addcmul(self._shift.expand(shape), x.float(), self._scale).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.to_input(self.images[i : i + 1])[0], int(self.labels[i])


def make_dataset(
    arrays: ImageArrays,
    *,
    input_size: int,
    in_chans: int = 3,
    mean: Sequence[float],
    std: Sequence[float],
    subset: int | None = None,
    subset_seed: int = 0,
) -> ArrayDataset:
    """Resize a split once (same rule as :func:`hsnet.data.to_model_input`, rounded to uint8) and hold it in memory.

    Args:
        arrays: a split from :func:`hsnet.data.load_arrays`.
        input_size: side of the model input.
        in_chans: channels of the model input (1 or 3).
        mean: per-channel normalization (``in_chans`` values, or 1).
        std: same.
        subset: keep only the first ``subset`` images of a fixed class-balanced permutation
            (:func:`hsnet.data.balanced_indices` with ``subset_seed``), for quick runs.
        subset_seed: seed of that permutation.

    Raises:
        DataError: bad ``in_chans``, mean/std length, or a subset larger than the split.
    """
    indices = None
    images, labels = arrays.images, arrays.labels
    if subset is not None:
        if subset < 1:
            raise DataError(f"subset must be at least 1, got {subset}")
        if subset > len(labels):
            raise DataError(f"subset {subset} is larger than the {arrays.name} {arrays.split} split ({len(labels)})")
        indices = balanced_indices(labels, subset, seed=subset_seed)
        images, labels = images[indices], labels[indices]
    return ArrayDataset(
        resize_uint8(images, input_size, in_chans),
        torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        classes=arrays.classes,
        name=arrays.name,
        split=arrays.split,
        input_size=input_size,
        in_chans=in_chans,
        mean=mean,
        std=std,
        indices=indices,
    )


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch: seeded from (seed, epoch) through numpy's SeedSequence, so neighbouring seeds
    and epochs give unrelated streams."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, epoch]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


@dataclass
class BatchIterator:
    """Iterates (x float32 normalized NCHW, y int64) batches of one epoch of one rank; see the module docstring.

    Re-iterable: each ``iter()`` yields the same batches. ``len()`` is the number of steps, equal on every rank.
    """

    dataset: ArrayDataset
    batch_size: int
    shuffle: bool
    augment: bool
    padding: int = 4
    flip: bool = True
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    start_step: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise DataError(f"rank {self.rank} is outside world size {self.world_size}")
        if self.padding < 0:
            raise DataError(f"padding must be >= 0, got {self.padding}")
        if self.start_step < 0:
            raise DataError(f"start step must be >= 0, got {self.start_step}")
        if self.drop_last and len(self.dataset) < self.batch_size * self.world_size:
            raise DataError(
                f"{len(self.dataset)} images cannot fill one batch of {self.batch_size} x {self.world_size} ranks "
                "with drop_last; use a smaller batch size"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (as DistributedSampler.set_epoch); the batches change with it."""
        self.epoch = epoch

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, w = len(self.dataset), self.world_size
        if self.drop_last:
            return n // self.global_batch_size
        per_rank = math.ceil(n / w)
        return math.ceil(per_rank / self.batch_size)

    def _positions(self) -> torch.Tensor:
        """Positions in the epoch's permutation this rank visits, in order."""
        n, w = len(self.dataset), self.world_size
        if self.drop_last:
            total = len(self) * self.global_batch_size
            positions = torch.arange(total)
        else:
            total = math.ceil(n / w) * w
            positions = torch.arange(total) % n  # padding repeats the first positions
        return positions[self.rank :: w]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        g = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        if self.augment:
            # Drawn for all n positions whatever the rank or world size: position p gets the same crop and flip.
            dy, dx = crop_params(n, self.padding, g)
            flips = flip_params(n, g) if self.flip else None
        positions = self._positions()
        for step in range(self.start_step, len(self)):
            pos = positions[step * self.batch_size : (step + 1) * self.batch_size]
            idx = order[pos]
            x = self.dataset.images[idx]
            if self.augment:
                x = crop(x, dy[pos], dx[pos], self.padding, None if flips is None else flips[pos])
            yield self.dataset.to_input(x), self.dataset.labels[idx]


def make_loader(
    dataset: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool,
    augment: bool,
    padding: int = 4,
    flip: bool = True,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    start_step: int = 0,
) -> BatchIterator:
    """Batches of one epoch for one rank (``batch_size`` is per rank). See the module docstring for the
    reproducibility and sharding contract.

    Raises:
        DataError: batch size < 1, rank outside world size, negative padding or start step, or drop_last with too
            few images for one global batch.
    """
    return BatchIterator(
        dataset,
        batch_size,
        shuffle=shuffle,
        augment=augment,
        padding=padding,
        flip=flip,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        start_step=start_step,
    )
