"""The training loop and its run folder: config, metrics, checkpoints, figures; resumable after ``kill -9``.

Run folder (``out``)::

    config.json     the resolved TrainConfig (written first)
    metrics.jsonl   one JSON record per finished epoch (rewritten whole, atomically, after each epoch)
    last.pt         checkpoint after the last finished epoch (weights, optimizer, scheduler, RNG, history)
    best.pt         checkpoint of the epoch with the best test top-1 so far
    curves.png      loss and accuracy against epoch (the paper's Fig. 7)
    confusion.csv   confusion matrix of the final model on the test split, and confusion.png (Fig. 8)

Crash safety: every file is replaced atomically, and ``best.pt`` is written before ``last.pt``. After a kill at
any moment, ``last.pt`` is a complete checkpoint of some finished epoch ``e`` (or absent: the run restarts from
scratch), ``best.pt`` is complete and at most one epoch ahead, and resuming re-runs epoch ``e + 1`` exactly: the
data order and augmentation are a function of (seed, epoch), and the RNG states (dropout) are restored, so the
finished run has the same weights, bit for bit, as one that was never interrupted (same machine, device and
thread count).
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsnet.checkpoint import Checkpoint, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from hsnet.errors import HSNetError
from hsnet.toolbox.atomic import atomic_write_json, atomic_write_text, ensure_writable_dir
from hsnet.toolbox.machine import cpu_model, usable_cores
from hsnet.toolbox.progress import log
from hsnet.training import distributed
from hsnet.training.build import (
    RunData,
    build_data,
    build_model,
    build_optimizer,
    build_scheduler,
    resolve_device,
)
from hsnet.training.config import ConfigError, TrainConfig, config_from_dict, config_to_dict
from hsnet.training.engine import EpochStats, EvalResult, evaluate, prefetch, train_one_epoch
from hsnet.training.plots import plot_confusion, plot_curves, write_confusion_csv

__all__ = ["RESUMABLE_FIELDS", "RUN_FILES", "FitResult", "RunError", "fit", "measurement_context", "resume_config"]

RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "last.pt",
    "best.pt",
    "curves.png",
    "confusion.csv",
    "confusion.png",
)
# Fields a resumed run may change: they do not alter what the finished epochs computed.
RESUMABLE_FIELDS = ("epochs", "device", "threads", "workers", "data_dir", "eval_batch_size", "out")


class RunError(HSNetError):
    """A run folder that cannot be used as asked: nothing to resume, or a run that would be overwritten."""


@dataclass
class FitResult:
    """What a finished :func:`fit` produced.

    Attributes:
        out: the run folder.
        history: one record per epoch (the lines of ``metrics.jsonl``).
        final: evaluation of the final model on the test split.
        best_top1: best test top-1 in percent, reached at ``best_epoch`` (1-based).
    """

    out: Path
    history: list[dict[str, Any]]
    final: EvalResult
    best_top1: float
    best_epoch: int
    classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def best_checkpoint(self) -> Path:
        return self.out / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.out / "last.pt"


def _device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's name and the cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {usable_cores()} cores"


def measurement_context(device: torch.device, world_size: int, batch_size: int, batch: str = "global batch") -> str:
    """What every speed and accuracy figure was measured on: device (CPU name), threads, ranks, batch, torch."""
    where = f"{device.type} ({_device_name(device)})"
    if device.type != "cuda":
        n = torch.get_num_threads()
        where += f", {n} thread{'s' if n != 1 else ''}"
    ranks = f", {world_size} ranks" if world_size > 1 else ""
    return f"{where}{ranks}, {batch} {batch_size}, fp32, torch {torch.__version__}"


def _has_run(out: Path) -> list[str]:
    return [name for name in RUN_FILES if (out / name).exists()]


def resume_config(out: str | Path, **overrides: Any) -> TrainConfig:
    """The configuration of the run in ``out`` (``config.json``, else ``last.pt``), with ``overrides`` applied.

    Args:
        out: an existing run folder.
        **overrides: new values of :data:`RESUMABLE_FIELDS`; other fields may be given only with their saved
            values (so the command that started a run, plus ``--resume``, continues it).

    Raises:
        RunError: nothing to resume in ``out``, or an override that would change the run.
        CheckpointError: ``last.pt`` (used when ``config.json`` is missing) is unreadable.
    """
    out = Path(out)
    config_file = out / "config.json"
    if config_file.is_file():
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunError(f"{config_file} is unreadable ({e}); cannot resume") from None
    elif (out / "last.pt").is_file():
        data = load_checkpoint(out / "last.pt").config
    else:
        where = f"{out} does not exist" if not out.exists() else f"{out} holds no config.json or last.pt"
        raise RunError(f"nothing to resume: {where}; start a new run without --resume")
    if not isinstance(data, dict):
        raise RunError(f"{config_file} does not hold a configuration object; cannot resume")
    saved = config_to_dict(config_from_dict(data))
    asked = config_to_dict(config_from_dict({**data, **overrides}))
    changed = sorted(k for k in overrides if k not in RESUMABLE_FIELDS and asked[k] != saved[k])
    if changed:
        raise RunError(
            f"--resume continues the saved configuration; {', '.join(changed)} cannot change "
            f"(allowed: {', '.join(RESUMABLE_FIELDS)})"
        )
    return config_from_dict({**data, **overrides, "out": str(out)})


def _prepare_out(out: Path, *, resume: bool, overwrite: bool, is_main: bool) -> None:
    """Refuse to clobber a run, check the folder is writable, and clear it for ``overwrite``."""
    existing = _has_run(out) if out.is_dir() else []
    if resume and not any(name in existing for name in ("config.json", "last.pt")):
        raise RunError(f"nothing to resume in {out} (no config.json or last.pt); start a new run without --resume")
    if not resume and existing and not overwrite:
        raise RunError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it or --overwrite to "
            "start over"
        )
    ensure_writable_dir(out)
    if not is_main:
        return
    if overwrite and not resume:
        for name in existing:  # only the run's own files: anything else in the folder is the user's
            (out / name).unlink()
    for name in RUN_FILES:  # temporaries of writes cut short by kill -9 (atomic_path names them .NAME.*.partial)
        for stale in out.glob(f".{name}.*.partial"):
            stale.unlink(missing_ok=True)


def _check_resumable(ckpt: Checkpoint, config: TrainConfig, path: Path, num_classes: int) -> None:
    if ckpt.model != config.model or ckpt.num_classes != num_classes:
        raise CheckpointError(
            f"{path} holds {ckpt.model} with {ckpt.num_classes} classes; this run trains {config.model} with "
            f"{num_classes} classes"
        )
    saved = ckpt.config
    now = config_to_dict(config)
    changed = sorted(k for k in now if k not in RESUMABLE_FIELDS and k in saved and saved[k] != now[k])
    if changed:
        raise RunError(f"{path} was trained with other settings ({', '.join(changed)}); resume with the saved ones")


def _checkpoint(
    config: TrainConfig,
    t: _Trainer,
    epoch: int,
    record: dict[str, Any],
    history: list[dict[str, Any]],
    best: tuple[float, int],
) -> Checkpoint:
    return Checkpoint(
        model=config.model,
        num_classes=len(t.data.classes),
        input_size=config.input_size,
        in_chans=config.in_chans,
        classes=list(t.data.classes),
        mean=list(t.data.mean),
        std=list(t.data.std),
        state_dict=t.model.state_dict(),
        optimizer=t.optimizer.state_dict(),
        scheduler=t.scheduler.state_dict(),
        rng=rng_state(),
        epoch=epoch,
        config=config_to_dict(config),
        metrics={**record, "best_top1": best[0], "best_epoch": best[1], "history": history},
        model_args=dict(config.model_args),
    )


def _write_outputs(out: Path, history: list[dict[str, Any]], config: TrainConfig, context: str) -> None:
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    plot_curves(
        history,
        out / "curves.png",
        title=f"{config.model} on {config.dataset} ({config.recipe} recipe, {config.input_size}x{config.input_size})",
        caption=f"measured on {context}",
        augmented=config.augment,
        label_smoothing=config.label_smoothing,
    )


def _final_outputs(out: Path, result: EvalResult, classes: tuple[str, ...], config: TrainConfig, ctx: str) -> None:
    write_confusion_csv(result.confusion, classes, out / "confusion.csv")
    plot_confusion(
        result.confusion,
        classes,
        out / "confusion.png",
        title=f"{config.model} on {config.dataset} test ({result.images} images): top-1 {result.top1:.2f} %",
        caption=f"final model after {config.epochs} epochs; measured on {ctx}",
    )


def fit(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> FitResult:
    """Train ``config`` into the run folder ``out`` (default ``config.out``), one checkpoint per epoch.

    Under ``torchrun`` every rank calls this; rank 0 alone writes files and prints.

    Args:
        config: the run (see :func:`hsnet.training.make_config`, or :func:`resume_config` to continue one).
        out: run folder.
        resume: continue from ``out/last.pt`` (or from scratch if the run died before its first epoch ended).
        overwrite: replace a run already in ``out`` (its files only).
        show_progress: per-batch progress (a bar in a terminal, plain lines otherwise) and one line per epoch.

    Raises:
        RunError: nothing to resume, a run in the way, or a checkpoint trained with other settings.
        CheckpointError: a corrupt ``last.pt``.
        hsnet.data.DataError, ConfigError, HSNetError: bad data, configuration or output folder.
    """
    out = Path(out if out is not None else config.out or "runs/run")
    config = config_from_dict({**config_to_dict(config), "out": str(out)})
    device = resolve_device(config.device, distributed._env_int("LOCAL_RANK", 0))
    joined_here = not distributed.is_initialized()
    dist_info = distributed.init_distributed(device)
    created = not out.exists()
    try:
        return _fit(config, out, device, dist_info, resume=resume, overwrite=overwrite, show=show_progress)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            with contextlib.suppress(OSError):  # another rank may have removed it already
                out.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise
    finally:
        if joined_here:  # a process group the caller formed is the caller's to close
            distributed.cleanup()


@dataclass
class _Trainer:
    """The live objects of a run on one rank."""

    config: TrainConfig
    data: RunData
    device: torch.device
    dist_info: distributed.DistInfo
    model: nn.Module
    net: nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    steps_per_epoch: int

    @classmethod
    def build(cls, config: TrainConfig, data: RunData, device: torch.device, dist_info: distributed.DistInfo):  # noqa: ANN206
        model = build_model(config, len(data.classes)).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(config, model)
        trainer = cls(config, data, device, dist_info, model, model, optimizer, None, nn.Module(), 0)
        trainer.steps_per_epoch = len(trainer.batches(0))
        trainer.scheduler = build_scheduler(config, optimizer, trainer.steps_per_epoch)
        trainer.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        return trainer

    def batches(self, epoch: int):  # noqa: ANN201 - hsnet.data.loader.BatchIterator
        """This rank's share of the epoch's global batches (per-rank batch = global batch / world size)."""
        from hsnet.data.loader import make_loader

        c = self.config
        return make_loader(
            self.data.train,
            c.batch_size // self.dist_info.world_size,
            shuffle=True,
            augment=c.augment,
            padding=c.crop_padding,
            flip=c.flip,
            seed=c.seed,
            epoch=epoch,
            rank=self.dist_info.rank,
            world_size=self.dist_info.world_size,
            drop_last=True,
        )

    def restore(self, ckpt: Checkpoint, path: Path) -> None:
        try:
            self.model.load_state_dict(ckpt.state_dict)
            self.optimizer.load_state_dict(ckpt.optimizer or {})
            self.scheduler.load_state_dict(ckpt.scheduler or {})
        except (RuntimeError, ValueError, KeyError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CheckpointError(f"{path} does not fit this run: {first}") from None
        if ckpt.rng is not None:
            set_rng_state(ckpt.rng)

    def distribute(self) -> None:
        if self.dist_info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def run_epoch(self, epoch: int, show: bool) -> tuple[EpochStats, EvalResult]:
        c = self.config
        tag = f"epoch {epoch + 1}/{c.epochs}"
        stats = train_one_epoch(
            self.net,
            prefetch(self.batches(epoch), c.workers),
            criterion=self.criterion,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            device=self.device,
            grad_accum=c.grad_accum,
            channels_last=c.channels_last,
            dist_info=self.dist_info,
            desc=f"{tag} train",
            show_progress=show,
        )
        return stats, self.evaluate(f"{tag} test", show)

    def evaluate(self, desc: str, show: bool) -> EvalResult:
        c = self.config
        return evaluate(
            self.model,
            self.data.test,
            device=self.device,
            batch_size=c.eval_batch_size,
            channels_last=c.channels_last,
            dist_info=self.dist_info,
            desc=desc,
            show_progress=show,
        )


def _record(epoch: int, stats: EpochStats, result: EvalResult, previous: list[dict[str, Any]], t: _Trainer) -> dict:
    epoch_time = stats.seconds + result.seconds
    return {
        "epoch": epoch + 1,
        "train_loss": stats.loss,
        "train_top1": stats.top1,
        "test_loss": result.loss,
        "test_top1": result.top1,
        "test_top5": result.top5,
        "lr": stats.lr,
        "images_per_s": stats.images_per_s,
        "train_time_s": stats.seconds,
        "epoch_time_s": epoch_time,
        "total_time_s": (previous[-1]["total_time_s"] if previous else 0.0) + epoch_time,
        "device": str(t.device),
        "machine": _device_name(t.device),
        "threads": torch.get_num_threads(),
        "world_size": t.dist_info.world_size,
    }


def _fit(
    config: TrainConfig,
    out: Path,
    device: torch.device,
    dist_info: distributed.DistInfo,
    *,
    resume: bool,
    overwrite: bool,
    show: bool,
) -> FitResult:
    main = dist_info.is_main
    show = show and main
    if config.batch_size % (dist_info.world_size * config.grad_accum):
        raise ConfigError(
            f"batch_size {config.batch_size} must be divisible by {dist_info.world_size} ranks x grad_accum "
            f"{config.grad_accum}"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    _prepare_out(out, resume=resume, overwrite=overwrite, is_main=main)
    data = build_data(config)
    last = out / "last.pt"
    # Everything is validated before the first write, so a refused resume leaves the run folder as it was.
    ckpt = load_checkpoint(last) if resume and last.is_file() else None
    if ckpt is not None:
        _check_resumable(ckpt, config, last, len(data.classes))
    trainer = _Trainer.build(config, data, device, dist_info)
    history: list[dict[str, Any]] = []
    best = (-1.0, 0)
    if ckpt is not None:
        trainer.restore(ckpt, last)
        history = list(ckpt.metrics.get("history", []))
        best = (float(ckpt.metrics.get("best_top1", -1.0)), int(ckpt.metrics.get("best_epoch", 0)))
    else:
        # Model initialisation already drew from torch's generator seeded in build_model; seed the rest too.
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
    if main:
        atomic_write_json(out / "config.json", config_to_dict(config))
    distributed.barrier()
    trainer.distribute()
    context = measurement_context(device, dist_info.world_size, config.batch_size)
    start_epoch = ckpt.epoch if ckpt is not None else 0
    if show:
        if ckpt is not None:
            log(f"resuming {out} after epoch {start_epoch}/{config.epochs}")
        log(
            f"training {config.model} on {config.dataset} ({len(data.train)} train / {len(data.test)} test images, "
            f"{config.input_size}x{config.input_size}), {config.epochs} epochs of {trainer.steps_per_epoch} steps; "
            f"{context}"
        )
    final: EvalResult | None = None
    for epoch in range(start_epoch, config.epochs):
        stats, final = trainer.run_epoch(epoch, show)
        record = _record(epoch, stats, final, history, trainer)
        history.append(record)
        is_best = final.top1 > best[0]
        if is_best:
            best = (final.top1, epoch + 1)
        if main:
            state = _checkpoint(config, trainer, epoch + 1, record, history, best)
            if is_best:  # best first: a kill between the two writes re-runs this epoch and rewrites both
                save_checkpoint(out / "best.pt", state)
            save_checkpoint(last, state)
            _write_outputs(out, history, config, context)
        if show:
            log(
                f"epoch {epoch + 1}/{config.epochs}: train loss {stats.loss:.4f} top-1 {stats.top1:.2f} % | test loss "
                f"{final.loss:.4f} top-1 {final.top1:.2f} % top-{final.topk} {final.top5:.2f} % | lr {stats.lr:.4g} | "
                f"{stats.images_per_s:.0f} img/s | {record['epoch_time_s']:.1f} s ({context})"
            )
        distributed.barrier()
    if final is None:  # resumed a finished run: evaluate the final model again for the last outputs
        final = trainer.evaluate("test", show)
        if show:
            log(f"{out}: all {config.epochs} epochs were already done; final outputs refreshed")
    if main:
        if history:
            _write_outputs(out, history, config, context)
        _final_outputs(out, final, data.classes, config, context)
        if show:
            log(f"best test top-1 {best[0]:.2f} % at epoch {best[1]}; run folder {out}")
    distributed.barrier()
    return FitResult(out, history, final, best[0], best[1], data.classes)
