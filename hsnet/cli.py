"""The ``hsnet`` command line: a thin layer over :mod:`hsnet.registry` and :mod:`hsnet.profiling`, plus the
subcommands other packages register under the ``hsnet.commands`` entry-point group (see ``pyproject.toml``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import click

from hsnet.errors import HSNetError
from hsnet.models.paper import TABLE4, TABLE4_INPUT_SIZE, TABLE4_NUM_CLASSES, table4_row
from hsnet.profiling import Profile, profile_model
from hsnet.profiling.report import format_profile, measurement_context
from hsnet.registry import create_model, list_models, model_info
from hsnet.toolbox.cli import INPUT_SIZE, NUM_CLASSES, emit_json, user_errors
from hsnet.toolbox.tables import format_count, format_table

__all__ = ["main"]


def _profile(name: str, input_size: int | None, num_classes: int | None) -> tuple[int, Profile]:
    """Build and profile one registered model; a size the model cannot run at is a user error."""
    info = model_info(name)
    size = input_size or info.input_size
    model = create_model(name, num_classes=num_classes)
    try:
        return size, profile_model(model, size)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        sizes = ", ".join(map(str, info.test_sizes))
        raise HSNetError(f"{name} cannot run on a {size}x{size} input ({first}); it is tested at {sizes}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hsnet")
def main() -> None:
    """hsnet: HSNet and its baselines -- profile, train, deploy, benchmark."""


@main.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def models_cmd(pattern: str, as_json: bool) -> None:
    """List registered models matching PATTERN (shell wildcards) with declared parameters and MACs.

    The declared figures are tested to equal what `hsnet profile` measures.
    """
    names = list_models(pattern)
    if not names:
        raise HSNetError(f"no model matches {pattern!r}; valid names: {', '.join(list_models())}")
    infos = [model_info(n) for n in names]
    if as_json:
        emit_json(
            [
                {
                    "name": i.name,
                    "family": i.family,
                    "paper": i.paper,
                    "num_classes": i.num_classes,
                    "input_size": i.input_size,
                    "input_sizes": list(i.test_sizes),
                    "params": i.params,
                    "macs": i.macs,
                    "description": i.description,
                }
                for i in infos
            ]
        )
        return
    rows = [
        (i.name, i.family, i.input_size, i.num_classes, format_count(i.params), format_count(i.macs),
         i.description)
        for i in infos
    ]  # fmt: skip
    click.echo(format_table(["model", "family", "input", "classes", "params", "MACs", "description"], rows,
                            "lllrrrl"))  # fmt: skip
    click.echo(f"\n{len(infos)} models; MACs = conv/linear multiply-adds for one image at the input size shown")


@main.command("profile")
@click.argument("model")
@click.option("--input-size", type=INPUT_SIZE, default=None, help="Square input side [default: the model's].")
@click.option("--num-classes", type=NUM_CLASSES, default=None, help="Classifier width [default: the model's].")
@click.option("--layers/--no-layers", default=False, help="Also print the per-layer table.")
@click.option("--json", "as_json", is_flag=True, help="Print the full profile as JSON.")
@user_errors
def profile_cmd(model: str, input_size: int | None, num_classes: int | None, layers: bool, as_json: bool) -> None:
    """Count parameters, MACs and FLOPs of MODEL, broken down by operator kind."""
    size, prof = _profile(model, input_size, num_classes)
    if as_json:
        emit_json({"model": model, "input_size": size, **prof.to_dict()})
    else:
        click.echo(format_profile(prof, model, layers=layers))


@main.command("compare")
@click.argument("models", nargs=-1)
@click.option("--input-size", type=INPUT_SIZE, default=TABLE4_INPUT_SIZE, show_default=True)
@click.option("--num-classes", type=NUM_CLASSES, default=TABLE4_NUM_CLASSES, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def compare_cmd(models: Sequence[str], input_size: int, num_classes: int, as_json: bool) -> None:
    """Profile HSNet against its baselines, next to the paper's Table 4 figures.

    MODELS defaults to Table 4's line-up (CIFAR-100, 100 classes, 224x224 inputs).
    """
    names = list(models) or [r.model for r in TABLE4]
    for n in names:
        model_info(n)  # fail on a bad name before any work
    results = []
    for i, name in enumerate(names, 1):
        click.echo(f"[{i}/{len(names)}] profiling {name}", err=True)
        _, prof = _profile(name, input_size, num_classes)
        row = table4_row(name)
        results.append((name, prof, row))
    if as_json:
        emit_json(
            [
                {
                    "model": n,
                    "input_size": input_size,
                    "num_classes": num_classes,
                    "params": p.params,
                    "macs": p.macs,
                    "flops": p.flops,
                    "pointwise_mac_share": p.macs_by_kind["pointwise"] / p.macs,
                    "paper": None if r is None else dataclasses.asdict(r),
                }
                for n, p, r in results
            ]
        )
        return
    rows = [
        (n, format_count(p.params), "-" if r is None else f"{r.params_m:.2f} M", format_count(p.macs),
         format_count(p.flops), "-" if r is None else format_count(r.flops),
         f"{100 * p.macs_by_kind['pointwise'] / p.macs:.0f} %")
        for n, p, r in results
    ]  # fmt: skip
    click.echo(format_table(["model", "params", "paper", "MACs", "FLOPs", "paper FLOPs", "1x1 share"], rows))
    click.echo(f"\n{num_classes} classes; measured on {measurement_context(results[0][1].input_shape)}")
    click.echo("paper = HSNet paper Table 4 (CIFAR-100); '-' where the paper's figure is unreadable")


#: The entry-point group through which packages add subcommands to ``hsnet`` (train/eval/runs, deploy, bench...):
#: the zoo never imports the floors above it; each floor registers itself in ``pyproject.toml``.
COMMAND_GROUP = "hsnet.commands"


def _add_subcommands() -> None:
    """Attach every command registered in :data:`COMMAND_GROUP` (their modules import heavy dependencies lazily)."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        command = ep.load()
        main.add_command(command, ep.name)


_add_subcommands()
