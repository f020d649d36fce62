"""Summaries of finished (or stopped) run folders, side by side: what ``hsnet runs`` prints and plots.

A run folder is what :func:`hsnet.training.fit` writes: ``config.json`` and ``metrics.jsonl`` are enough to
summarize it (checkpoints are not opened). Comparing runs is only fair when they share a recipe; the summary
names every setting in which the runs differ besides the model, so that a reader sees it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hsnet.errors import HSNetError
from hsnet.training.config import ConfigError, TrainConfig, config_from_dict, config_to_dict

__all__ = ["RunSummary", "differing_settings", "read_run", "runs_table"]

# Settings that differ between runs without changing what was learned.
_INCIDENTAL = ("model", "out", "device", "threads", "workers", "data_dir", "eval_batch_size", "download")


@dataclass(frozen=True)
class RunSummary:
    """One run folder in figures.

    Attributes:
        path: the run folder.
        config: its saved configuration.
        history: its ``metrics.jsonl`` records, one per finished epoch.
        best_top1 / best_epoch: best test top-1 (%) and the epoch reaching it.
        final_top1 / final_top5: test accuracy after the last finished epoch.
        wall_s: training plus evaluation time of the finished epochs.
        images_per_s: median training throughput over the finished epochs (data loading included).
    """

    path: Path
    config: TrainConfig
    history: list[dict[str, Any]] = field(repr=False)
    best_top1: float
    best_epoch: int
    final_top1: float
    final_top5: float
    wall_s: float
    images_per_s: float

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.config.epochs

    @property
    def measured_on(self) -> str:
        """Device (and the CPU's name where recorded), threads and ranks of the last epoch, and the global batch."""
        last = self.history[-1]
        n = last.get("threads")
        where = f"{last.get('device', '?')} ({last['machine']})" if last.get("machine") else last.get("device", "?")
        threads = f", {n} thread{'s' if n != 1 else ''}" if n else ""
        ranks = f", {last['world_size']} ranks" if last.get("world_size", 1) > 1 else ""
        return f"{where}{threads}{ranks}, batch {self.config.batch_size}, fp32"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            path=str(self.path),
            config=config_to_dict(self.config),
            epochs_done=self.epochs_done,
            finished=self.finished,
            measured_on=self.measured_on,
        )
        return data


def read_run(path: str | Path) -> RunSummary:
    """Summarize the run in folder ``path`` from its ``config.json`` and ``metrics.jsonl``.

    Raises:
        HSNetError: the folder, either file or one of its records is missing or malformed (naming which).
    """
    path = Path(path)
    if not path.is_dir():
        raise HSNetError(f"{path} is not a run folder (it does not exist or is a file)")
    config_file, metrics_file = path / "config.json", path / "metrics.jsonl"
    for f in (config_file, metrics_file):
        if not f.is_file():
            raise HSNetError(f"{path} is not a run folder: {f.name} is missing (hsnet train writes it)")
    try:
        config = config_from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError, TypeError) as e:
        raise HSNetError(f"{config_file} is not a valid run configuration ({e})") from None
    history = []
    try:
        lines = metrics_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HSNetError(f"{metrics_file} is unreadable ({e})") from None
    needed = ("epoch", "test_top1", "test_top5", "images_per_s", "total_time_s")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            for key in needed:
                float(record[key])
        except (json.JSONDecodeError, ValueError, KeyError, TypeError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise HSNetError(f"{metrics_file} line {number} is not an epoch record ({reason})") from None
        history.append(record)
    if not history:
        raise HSNetError(f"{metrics_file} holds no finished epoch yet")
    best = max(history, key=lambda r: r["test_top1"])
    return RunSummary(
        path=path,
        config=config,
        history=history,
        best_top1=float(best["test_top1"]),
        best_epoch=int(best["epoch"]),
        final_top1=float(history[-1]["test_top1"]),
        final_top5=float(history[-1]["test_top5"]),
        wall_s=float(history[-1]["total_time_s"]),
        images_per_s=statistics.median(float(r["images_per_s"]) for r in history),
    )


def differing_settings(runs: Sequence[RunSummary]) -> list[str]:
    """Settings (other than the model and where or how fast it ran) that are not the same in every run."""
    dicts = [config_to_dict(r.config) for r in runs]
    return sorted(k for k in dicts[0] if k not in _INCIDENTAL and any(d[k] != dicts[0][k] for d in dicts[1:]))


def runs_table(runs: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the comparison: model, epochs, final and best accuracy, speed, wall time."""
    headers = ["model", "epochs", "final top-1", "final top-5", "best top-1 (epoch)", "train img/s", "wall time",
               "measured on"]  # fmt: skip
    rows = []
    for r in runs:
        epochs = f"{r.epochs_done}/{r.config.epochs}" + ("" if r.finished else " (unfinished)")
        rows.append(
            [
                r.config.model,
                epochs,
                f"{r.final_top1:.2f} %",
                f"{r.final_top5:.2f} %",
                f"{r.best_top1:.2f} % ({r.best_epoch})",
                f"{r.images_per_s:.0f}",
                f"{r.wall_s / 60:.1f} min",
                r.measured_on,
            ]
        )
    return headers, rows
