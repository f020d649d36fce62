"""One training epoch and one evaluation pass; metrics are reduced over DDP ranks."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hsnet.toolbox.progress import progress
from hsnet.training.distributed import DistInfo, all_reduce_sum

__all__ = ["EpochStats", "EvalResult", "evaluate", "prefetch", "train_one_epoch"]


@dataclass
class EpochStats:
    """Training metrics of one epoch over all ranks (accuracy in percent, on the augmented batches)."""

    loss: float
    top1: float
    images: int
    seconds: float
    lr: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EvalResult:
    """Evaluation of a split: mean loss, top-1/top-k in percent, and the confusion matrix (rows: true class)."""

    loss: float
    top1: float
    top5: float
    topk: int
    confusion: np.ndarray
    images: int
    seconds: float

    @property
    def per_class(self) -> np.ndarray:
        """Accuracy of each true class in percent (NaN for a class absent from the split)."""
        totals = self.confusion.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * np.diag(self.confusion) / totals


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class prefetch:  # noqa: N801 - used like a function, lower-case on purpose
    """Iterate ``batches`` preparing up to ``depth`` of them ahead in a background thread (0: inline).

    The order is unchanged, so results do not depend on ``depth``; the loader's tensor work releases the GIL and
    overlaps with the model's compute. ``len()`` is that of ``batches``.
    """

    def __init__(self, batches: Iterable, depth: int) -> None:
        self.batches, self.depth = batches, depth

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        if self.depth <= 0:
            yield from self.batches
            return
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        done = object()
        stop = threading.Event()

        def work() -> None:
            try:
                for item in self.batches:
                    if stop.is_set():
                        return
                    q.put(item)
                q.put(done)
            except BaseException as e:  # re-raised in the consumer
                q.put(e)

        thread = threading.Thread(target=work, daemon=True, name="hsnet-prefetch")
        thread.start()
        try:
            while (item := q.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.05)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    grad_accum: int = 1,
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
    desc: str = "train",
    show_progress: bool = True,
) -> EpochStats:
    """Run one epoch of SGD steps; the scheduler steps after every optimizer step.

    Each batch is split into ``grad_accum`` strided micro-batches (``x[j::grad_accum]``) whose gradients are
    averaged before the step: the same split, and the same gradient, as ``grad_accum`` DDP ranks would compute.

    Returns:
        Loss and top-1 over every sample of every rank, the image count, wall time and the last learning rate.
    """
    dist_info = dist_info or DistInfo()
    model.train()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    lr = optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    items = progress(batches, desc=desc) if show_progress else batches
    for x, y in items:
        lr = optimizer.param_groups[0]["lr"]
        optimizer.zero_grad(set_to_none=True)
        for j in range(grad_accum):
            xj = _to_device(x[j::grad_accum], device, channels_last)
            yj = y[j::grad_accum].to(device, non_blocking=True)
            # DDP all-reduces gradients on the last micro-batch only.
            sync = j == grad_accum - 1 or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if sync else model.no_sync():
                logits = model(xj)
                loss = criterion(logits, yj)
                (loss / grad_accum).backward()
            with torch.no_grad():
                totals[0] += loss.item() * yj.numel()
                totals[1] += (logits.argmax(1) == yj).sum().item()
                totals[2] += yj.numel()
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    all_reduce_sum(totals)
    loss_sum, correct, count = totals.tolist()
    count = max(count, 1.0)
    return EpochStats(loss_sum / count, 100.0 * correct / count, int(count), seconds, lr)


def _shard(n: int, rank: int, world_size: int) -> range:
    """Contiguous, non-overlapping index range of one rank (no padding, so nothing is counted twice)."""
    per = -(-n // world_size)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def evaluate(
    model: nn.Module,
    dataset,  # hsnet.data.loader.ArrayDataset
    *,
    device: torch.device,
    batch_size: int = 256,
    channels_last: bool = False,
    criterion: nn.Module | None = None,
    dist_info: DistInfo | None = None,
    desc: str = "eval",
    show_progress: bool = True,
) -> EvalResult:
    """Evaluate ``model`` (in eval mode, under inference mode) on every image of ``dataset`` once.

    Under DDP each rank takes a contiguous share and the confusion matrix and loss are summed over ranks.

    Args:
        criterion: the loss to report (default: plain cross-entropy).
    """
    dist_info = dist_info or DistInfo()
    criterion = criterion or nn.CrossEntropyLoss()
    num_classes = len(dataset.classes)
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    totals = torch.zeros(2, dtype=torch.float64)  # loss sum, top-k correct
    indices = _shard(len(dataset), dist_info.rank, dist_info.world_size)
    starts = range(indices.start, indices.stop, batch_size)
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in progress(starts, desc=desc) if show_progress else starts:
            stop = min(i + batch_size, indices.stop)
            x = _to_device(dataset.to_input(dataset.images[i:stop]), device, channels_last)
            y = dataset.labels[i:stop].to(device)
            logits = model(x).float()
            totals[0] += criterion(logits, y).item() * y.numel()
            top = logits.topk(k, dim=1).indices
            totals[1] += (top == y[:, None]).any(1).sum().item()
            confusion += torch.bincount(y.cpu() * num_classes + top[:, 0].cpu(), minlength=num_classes**2).view(
                num_classes, num_classes
            )
    seconds = time.perf_counter() - start
    all_reduce_sum(totals)
    all_reduce_sum(confusion)
    n = int(confusion.sum())
    denom = max(n, 1)
    top1 = 100.0 * float(confusion.diag().sum()) / denom
    return EvalResult(
        loss=float(totals[0]) / denom,
        top1=top1,
        top5=100.0 * float(totals[1]) / denom,
        topk=k,
        confusion=confusion.numpy(),
        images=n,
        seconds=seconds,
    )
