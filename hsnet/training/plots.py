"""Figures and tables of a run: training curves (the paper's Fig. 7) and the confusion matrix (Fig. 8).

Every file is written atomically; every figure carries a caption saying what was measured.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hsnet.toolbox.atomic import atomic_path, atomic_write_text

__all__ = ["plot_confusion", "plot_curves", "plot_runs", "write_confusion_csv"]


def _pyplot():  # noqa: ANN202 - matplotlib is imported lazily and without a display
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(
    history: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    title: str,
    caption: str,
    augmented: bool = True,
    label_smoothing: float = 0.0,
) -> Path:
    """Loss and top-1 accuracy (train and test) against epoch, as two panels in one PNG.

    Args:
        history: the run's ``metrics.jsonl`` records.
        path: PNG to write.
        title: what was trained (model, dataset).
        caption: how it was measured (device, threads, batch, recipe), printed under the panels.
        augmented: the training accuracy was measured on augmented batches (said in the legend).
        label_smoothing: the training loss includes label smoothing (said in the legend; test loss is plain).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    smoothing = f" (label smoothing {label_smoothing:g})" if label_smoothing else ""
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3, label=f"train{smoothing}")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", ms=3, label="test")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    train_label = "train top-1 (augmented batches)" if augmented else "train top-1"
    ax_acc.plot(epochs, [r["train_top1"] for r in history], "o-", ms=3, label=train_label)
    ax_acc.plot(epochs, [r["test_top1"] for r in history], "s-", ms=3, label="test top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend(loc="lower right")
    ax_acc.grid(alpha=0.3)
    if history:
        best = max(history, key=lambda r: r["test_top1"])
        ax_acc.annotate(f"best {best['test_top1']:.2f} %", (best["epoch"], best["test_top1"]),
                        textcoords="offset points", xytext=(-40, -18), fontsize=8)  # fmt: skip
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.supxlabel(caption, fontsize=8)
    return _save(fig, Path(path))


def plot_runs(
    runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: str | Path, *, title: str, caption: str
) -> Path:
    """Test top-1 and test loss against epoch for several runs (``(label, metrics.jsonl records)`` each)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for label, history in runs:
        epochs = [r["epoch"] for r in history]
        ax_acc.plot(epochs, [r["test_top1"] for r in history], "o-", ms=3, label=label)
        ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", ms=3, label=label)
    bests = [max(r["test_top1"] for r in h) for _, h in runs if h]
    if bests:  # the interesting range: up to 20 points below the worst run's best (an early collapse is cut off)
        ax_acc.set_ylim(max(0.0, min(bests) - 20), min(100.0, max(bests) + 3))
    ax_acc.set_ylabel("test top-1 (%)")
    ax_loss.set_ylabel("test cross-entropy loss")
    ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.supxlabel(caption, fontsize=8)
    return _save(fig, Path(path))


def plot_confusion(
    confusion: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str, caption: str
) -> Path:
    """The confusion matrix as a heat map of row-normalized rates (rows: true class), with counts when small.

    Args:
        confusion: counts, shape (C, C), rows true class, columns predicted class.
        classes: class names.
        path: PNG to write.
        title: what was evaluated.
        caption: the measurement context.
    """
    plt = _pyplot()
    c = len(classes)
    totals = confusion.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(totals > 0, confusion / np.maximum(totals, 1), 0.0)
    side = min(16.0, max(4.5, 0.45 * c + 2))
    fig, ax = plt.subplots(figsize=(side + 1, side + 0.4), layout="constrained")
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true class")
    if c <= 30:
        ax.set_xticks(range(c), labels=classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(c), labels=classes, fontsize=8)
        if c <= 20:
            for i in range(c):
                for j in range(c):
                    if confusion[i, j]:
                        ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                                color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.supxlabel(caption, fontsize=8)
    return _save(fig, Path(path))


def write_confusion_csv(confusion: np.ndarray, classes: Sequence[str], path: str | Path) -> Path:
    """Counts as CSV: a header row of predicted classes, then one row per true class (name first)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion, strict=True):
        writer.writerow([name, *(int(v) for v in row)])
    return atomic_write_text(path, buf.getvalue())
