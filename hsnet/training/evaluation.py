"""Evaluate a checkpoint on a dataset split: top-1, top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hsnet.checkpoint import Checkpoint, CheckpointError, load_model
from hsnet.toolbox.atomic import atomic_write_json, ensure_writable_dir
from hsnet.training.build import resolve_device
from hsnet.training.engine import EvalResult, evaluate
from hsnet.training.fit import measurement_context
from hsnet.training.plots import plot_confusion, write_confusion_csv

__all__ = ["EvalReport", "evaluate_checkpoint", "write_eval_outputs"]


@dataclass
class EvalReport:
    """The evaluation of one checkpoint on one split, with what it was measured on."""

    checkpoint: Path
    meta: Checkpoint
    dataset: str
    split: str
    result: EvalResult
    context: str

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: accuracies in percent, per-class accuracy by name, the confusion matrix as nested lists."""
        r = self.result
        return {
            "checkpoint": str(self.checkpoint),
            "model": self.meta.model,
            "epoch": self.meta.epoch,
            "dataset": self.dataset,
            "split": self.split,
            "images": r.images,
            "top1": r.top1,
            "top5": r.top5,
            "topk": r.topk,
            "loss": r.loss,
            "per_class": {c: (None if a != a else float(a)) for c, a in zip(self.classes, r.per_class, strict=True)},
            "classes": self.classes,
            "confusion": r.confusion.tolist(),
            "images_per_s": r.images / r.seconds if r.seconds > 0 else None,
            "measured_on": self.context,
        }


def evaluate_checkpoint(
    path: str | Path,
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    subset: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    threads: int | None = None,
    show_progress: bool = True,
) -> EvalReport:
    """Load ``path`` safely and evaluate it on ``dataset``'s ``split``, preprocessed as the checkpoint says.

    Raises:
        CheckpointError: unreadable or unsafe checkpoint, or one whose classes differ from the dataset's.
        hsnet.data.DataError: missing or malformed data.
    """
    from hsnet.data import load_arrays
    from hsnet.data.loader import make_dataset

    path = Path(path)
    model, meta = load_model(path)
    size = {"image_size": meta.input_size} if dataset == "folder" else {}
    arrays = load_arrays(dataset, split, data_dir=data_dir, **size)
    if tuple(arrays.classes) != tuple(meta.classes):
        raise CheckpointError(
            f"checkpoint {path} was trained on {meta.num_classes} classes ({', '.join(meta.classes[:4])}, ...); "
            f"{dataset} has {len(arrays.classes)} ({', '.join(arrays.classes[:4])}, ...)"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    data = make_dataset(
        arrays, input_size=meta.input_size, in_chans=meta.in_chans, mean=meta.mean, std=meta.std, subset=subset
    )
    channels_last = bool(meta.config.get("channels_last", False))
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    result = evaluate(
        model, data, device=dev, batch_size=batch_size, channels_last=channels_last, show_progress=show_progress
    )
    return EvalReport(path, meta, dataset, split, result, measurement_context(dev, 1, batch_size, batch="batch"))


def write_eval_outputs(report: EvalReport, out: str | Path) -> list[Path]:
    """Write ``eval.json``, ``confusion.csv`` and ``confusion.png`` into ``out``; returns their paths.

    Raises:
        HSNetError: ``out`` cannot be written.
    """
    out = ensure_writable_dir(out)
    r = report.result
    title = f"{report.meta.model} on {report.dataset} {report.split} ({r.images} images): top-1 {r.top1:.2f} %"
    return [
        atomic_write_json(out / "eval.json", report.to_dict()),
        write_confusion_csv(r.confusion, report.classes, out / "confusion.csv"),
        plot_confusion(
            r.confusion,
            report.classes,
            out / "confusion.png",
            title=title,
            caption=f"{report.checkpoint}; {report.context}",
        ),
    ]
