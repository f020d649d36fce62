"""``hsnet train`` and ``hsnet eval``: thin click layers over :mod:`hsnet.training` (imported lazily)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import click
from click.core import ParameterSource

from hsnet.errors import CheckFailed, HSNetError
from hsnet.toolbox.atomic import check_writable_dir, check_writable_file
from hsnet.toolbox.cli import INPUT_SIZE, emit_json, user_errors

__all__ = ["eval_cmd", "runs_cmd", "train_cmd"]

_RECIPES = ("cifar-paper", "modern", "fashion-quick")  # hsnet.training.config.RECIPES, kept here to stay lazy
_POSITIVE = click.IntRange(min=1)
_FRACTION = click.FloatRange(min=0.0, max=1.0, max_open=True)


def _milestones(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise HSNetError(f"--milestones takes comma-separated epochs such as 60,120,160, got {value!r}") from None


def _model_args(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    if not pairs:
        return None
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise HSNetError(f"--model-arg takes KEY=VALUE (e.g. drop_rate=0.0), got {pair!r}")
        try:
            args[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            args[key.strip()] = raw
    return args


@click.command("train")
@click.option(
    "--recipe",
    type=click.Choice(_RECIPES),
    default="cifar-paper",
    show_default=True,
    help="Starting values: cifar-paper (Table 4), modern (cosine + label smoothing), fashion-quick.",
)
@click.option("--model", default=None, help="Registry name (see `hsnet models`) [recipe: hsnet].")
@click.option(
    "--model-arg",
    "model_arg",
    multiple=True,
    metavar="KEY=VALUE",
    help="Architecture override for the model builder, e.g. drop_rate=0.0 (repeatable).",
)
@click.option("--dataset", default=None, help="fashion-mnist, mnist, cifar10, cifar100 or folder.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the dataset is.")
@click.option("--download", is_flag=True, default=None, help="Fetch the dataset (checksum-verified) if missing.")
@click.option("--epochs", type=_POSITIVE, default=None)
@click.option("--batch-size", type=_POSITIVE, default=None, help="Global batch size (split over DDP ranks).")
@click.option("--grad-accum", type=_POSITIVE, default=None, help="Micro-batches per optimizer step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate.")
@click.option("--momentum", type=_FRACTION, default=None)
@click.option("--nesterov/--no-nesterov", default=None)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--schedule", type=click.Choice(("multistep", "cosine")), default=None)
@click.option("--milestones", default=None, help="Multistep epochs, comma-separated (cifar-paper: 60,120,160).")
@click.option("--gamma", type=click.FloatRange(min=0, max=1, min_open=True), default=None)
@click.option("--min-lr", type=click.FloatRange(min=0), default=None, help="Final lr of the cosine schedule.")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None)
@click.option("--label-smoothing", type=_FRACTION, default=None)
@click.option("--augment/--no-augment", default=None, help="Random crop (pad 4) + horizontal flip.")
@click.option("--input-size", type=INPUT_SIZE, default=None, help="Model input side [recipe: 32].")
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--subset", type=_POSITIVE, default=None, help="Train on N images (class-balanced) for quick runs.")
@click.option("--test-subset", type=_POSITIVE, default=None, help="Evaluate on N test images.")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", type=_POSITIVE, default=None, help="torch CPU threads [torch's default].")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Batches prepared ahead in a thread.")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory format [on: faster here].")
@click.option("--eval-batch-size", type=_POSITIVE, default=None)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder [runs/MODEL-DATASET].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON on stdout.")
@user_errors
def train_cmd(recipe: str, model_arg: tuple[str, ...], milestones: str | None, out: str | None, resume: bool,
              overwrite: bool, as_json: bool, **options: Any) -> None:  # fmt: skip
    """Train a model on a dataset; writes config.json, metrics.jsonl, last.pt, best.pt and figures into --out.

    Under `torchrun --nproc-per-node N -m hsnet train ...` it runs DistributedDataParallel (gloo on CPU, NCCL on
    GPU); the batch size stays global. After an interruption (Ctrl-C, kill -9) `--resume` continues the run
    from its last finished epoch with the same result as an uninterrupted run.
    """
    from hsnet.training import fit, make_config, resume_config

    given = {k: v for k, v in options.items() if v is not None}
    if (ms := _milestones(milestones)) is not None:
        given["milestones"] = ms
    if (margs := _model_args(model_arg)) is not None:
        given["model_args"] = margs
    if resume:
        if out is None:
            raise HSNetError("--resume needs --out: the run folder to continue")
        if overwrite:
            raise HSNetError("--resume continues the run in --out and --overwrite replaces it; give one of them")
        if click.get_current_context().get_parameter_source("recipe") is ParameterSource.COMMANDLINE:
            given["recipe"] = recipe  # checked against the saved one like every other option
        config = resume_config(out, **given)
    else:
        config = make_config(recipe, **given)
        out = out or f"runs/{config.model}-{config.dataset}"
        check_writable_dir(out, what="run folder")  # before the data loads and the first epoch, not after
    result = fit(config, out, resume=resume, overwrite=overwrite)
    if as_json and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        emit_json(
            {
                "out": str(result.out),
                "best_top1": result.best_top1,
                "best_epoch": result.best_epoch,
                "final_top1": result.final.top1,
                "final_top5": result.final.top5,
                "history": result.history,
            }
        )


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", default=None, help="Dataset to evaluate on [the one the checkpoint was trained on].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--split", type=click.Choice(("train", "test")), default="test", show_default=True)
@click.option("--subset", type=_POSITIVE, default=None, help="Evaluate on N images (class-balanced).")
@click.option("--batch-size", type=_POSITIVE, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=_POSITIVE, default=None)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for eval.json, confusion.csv and confusion.png [CHECKPOINT-eval-DATASET next to it].",
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON on stdout.")
@user_errors
def eval_cmd(checkpoint: str, dataset: str | None, data_dir: str | None, split: str, subset: int | None,
             batch_size: int, device: str, threads: int | None, out: str | None, as_json: bool) -> None:  # fmt: skip
    """Evaluate CHECKPOINT: top-1, top-5, per-class accuracy, confusion matrix (CSV and PNG)."""
    from pathlib import Path

    from hsnet.checkpoint import load_checkpoint
    from hsnet.toolbox.tables import format_table
    from hsnet.training.evaluation import evaluate_checkpoint, write_eval_outputs

    if dataset is None:
        dataset = load_checkpoint(checkpoint).config.get("dataset")
        if not dataset:
            raise HSNetError(f"{checkpoint} does not say which dataset it was trained on; pass --dataset")
    path = Path(checkpoint)
    out_dir = check_writable_dir(out or path.with_name(f"{path.stem}-eval-{dataset}"), what="eval output folder")
    report = evaluate_checkpoint(
        checkpoint, dataset, data_dir=data_dir, split=split, subset=subset, batch_size=batch_size, device=device,
        threads=threads, show_progress=not as_json,
    )  # fmt: skip
    if not math.isfinite(report.result.loss):  # finite weights can still overflow; never report such figures
        raise CheckFailed(
            f"{checkpoint}: the model's outputs on {dataset} are not finite (loss {report.result.loss}); its accuracy "
            "would mean nothing"
        )
    files = write_eval_outputs(report, out_dir)
    if as_json:
        emit_json({**report.to_dict(), "files": [str(f) for f in files]})
        return
    r = report.result
    rows = [(c, f"{a:.2f} %" if a == a else "-", int(n)) for c, a, n in
            zip(report.classes, r.per_class, r.confusion.sum(1), strict=True)]  # fmt: skip
    click.echo(format_table(["class", "accuracy", "images"], rows))
    click.echo(
        f"\n{report.meta.model} (epoch {report.meta.epoch}) on {dataset} {split}, {r.images} images: "
        f"top-1 {r.top1:.2f} %, top-{r.topk} {r.top5:.2f} %, loss {r.loss:.4f}"
    )
    click.echo(f"measured on {report.context}; {r.images / max(r.seconds, 1e-9):.0f} images/s")
    click.echo(f"wrote {', '.join(str(f) for f in files)}")


@click.command("runs")
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write test top-1 and loss curves (PNG).")
@click.option("--markdown", is_flag=True, help="Print the table in Markdown.")
@click.option("--json", "as_json", is_flag=True, help="Print every summary (with its config and epochs) as JSON.")
@user_errors
def runs_cmd(folders: tuple[str, ...], plot: str | None, markdown: bool, as_json: bool) -> None:
    """Compare run folders written by `hsnet train`: accuracy, speed and wall time side by side.

    Settings in which the runs differ (other than the model, device and threads) are named under the table: a
    comparison is fair only under one recipe.
    """
    from hsnet.toolbox.tables import format_table, markdown_table
    from hsnet.training.plots import plot_runs
    from hsnet.training.runs import differing_settings, read_run, runs_table

    if plot:
        check_writable_file(plot, what="--plot file")
    runs = [read_run(f) for f in folders]
    differ = differing_settings(runs)
    datasets = sorted({r.config.dataset for r in runs})
    note = (
        f"runs differ in: {', '.join(differ)}" if differ
        else f"same recipe ({runs[0].config.recipe} as saved, {runs[0].config.epochs} epochs) for every run"
    )  # fmt: skip
    if plot:
        title = f"{', '.join(datasets)}: test accuracy per epoch"
        plot_runs([(f"{r.config.model} (final {r.final_top1:.2f} %)", r.history) for r in runs], plot, title=title,
                  caption=f"{note}; {runs[0].measured_on}")  # fmt: skip
    if as_json:
        emit_json({"runs": [r.to_dict() for r in runs], "differing_settings": differ, "plot": plot})
        return
    headers, rows = runs_table(runs)
    click.echo((markdown_table if markdown else format_table)(headers, rows, "lr" + "r" * 5 + "l"))
    click.echo(f"\n{', '.join(datasets)} test split; {note}")
    if plot:
        click.echo(f"wrote {plot}")
