"""hsnet.training.engine: evaluation counts, sharding, gradient accumulation, prefetching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hsnet.data import ImageArrays
from hsnet.data.loader import make_dataset, make_loader
from hsnet.training.engine import _shard, evaluate, prefetch, train_one_epoch


def _dataset(n: int = 40, classes: int = 4):
    g = np.random.default_rng(0)
    labels = np.arange(n, dtype=np.int64) % classes
    # Class c images are bright in quadrant c: learnable, and a hand-made model can classify them exactly.
    images = g.integers(0, 40, size=(n, 8, 8, 1), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        images[i, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] = 250
    arrays = ImageArrays(images, labels, tuple(f"c{i}" for i in range(classes)), "folder", "test", "memory")
    return make_dataset(arrays, input_size=8, in_chans=1, mean=(0.5,), std=(0.5,))


class _QuadrantModel(nn.Module):
    """Logit of class c = mean brightness of quadrant c; ``wrong[t] = p`` makes class t be predicted as p."""

    def __init__(self, wrong: dict[int, int] | None = None) -> None:
        super().__init__()
        self.wrong = wrong or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = nn.functional.avg_pool2d(x[:, :1], 4).flatten(1)  # (B, 4): quadrants in row-major order
        for true, pred in self.wrong.items():
            q[:, pred] += q[:, true]
            q[:, true] = -1e9
        return q


def test_evaluate_counts_every_image_once():
    ds = _dataset()
    perfect = evaluate(_QuadrantModel(), ds, device=torch.device("cpu"), batch_size=7, show_progress=False)
    assert (perfect.top1, perfect.top5, perfect.images, perfect.topk) == (100.0, 100.0, 40, 4)
    assert np.array_equal(perfect.confusion, np.diag([10, 10, 10, 10]))
    swapped = evaluate(_QuadrantModel({1: 3}), ds, device=torch.device("cpu"), batch_size=16, show_progress=False)
    # Class 1 is predicted as 3 (and nothing is predicted as 1): 30 of 40 right.
    assert swapped.top1 == 75.0
    assert swapped.confusion[1, 3] == 10 and swapped.confusion[:, 1].sum() == 0
    assert list(swapped.per_class) == [100.0, 0.0, 100.0, 100.0]


@pytest.mark.parametrize("n, world", [(10, 3), (7, 2), (2, 4), (100, 1)])
def test_eval_shards_cover_the_split_without_padding(n, world):
    covered = [i for rank in range(world) for i in _shard(n, rank, world)]
    assert covered == list(range(n))


def test_grad_accum_equals_the_full_batch_without_batchnorm():
    ds = _dataset(64)
    losses, weights = [], []
    for accum in (1, 4):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        batches = make_loader(ds, 16, shuffle=True, augment=True, padding=1, seed=3, epoch=0, drop_last=True)
        stats = train_one_epoch(
            model, batches, criterion=nn.CrossEntropyLoss(), optimizer=opt, scheduler=sched,
            device=torch.device("cpu"), grad_accum=accum, show_progress=False,
        )  # fmt: skip
        losses.append(stats.loss)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert stats.images == 64
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


def test_training_reduces_the_loss():
    ds = _dataset(64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    first = last = None
    for epoch in range(6):
        batches = make_loader(ds, 8, shuffle=True, augment=False, seed=0, epoch=epoch, drop_last=True)
        stats = train_one_epoch(
            model, batches, criterion=nn.CrossEntropyLoss(), optimizer=opt, scheduler=sched,
            device=torch.device("cpu"), channels_last=True, show_progress=False,
        )  # fmt: skip
        first = first if first is not None else stats.loss
        last = stats
    assert last.loss < 0.5 * first
    assert last.top1 >= 90.0
    result = evaluate(model, ds, device=torch.device("cpu"), channels_last=True, show_progress=False)
    assert result.top1 >= 90.0


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetch_keeps_order_and_length(depth):
    items = list(range(50))
    assert list(prefetch(items, depth)) == items
    assert len(prefetch(items, depth)) == 50


def test_prefetch_reraises_the_producers_error():
    def broken():
        yield 1
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        list(prefetch(broken(), 2))


def test_prefetch_stops_its_thread_when_abandoned():
    it = iter(prefetch(iter(range(1000)), 2))
    assert next(it) == 0
    it.close()  # the consumer leaves early (an exception in training): the producer must not hang
