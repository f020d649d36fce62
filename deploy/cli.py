"""``hsnet deploy export|verify|inspect``: a thin click layer over :mod:`deploy.pipeline` and :mod:`deploy.verify`.

Heavy modules (torch, onnx, converters) are imported inside the commands, so ``hsnet --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from hsnet.clitools import INPUT_SIZE, NUM_CLASSES, emit_json, user_errors
from hsnet.errors import HSNetError

__all__ = ["deploy"]

TARGET_CHOICES = ("onnx", "coreml", "tflite", "all")


def _split(values: Sequence[str]) -> list[str]:
    """Repeatable options that also take comma lists: ``--precision fp32,fp16 --precision int8``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


@click.group("deploy")
def deploy() -> None:
    """Export models to ONNX, TFLite and CoreML with parity proven on real images at every stage."""


@deploy.command("export")
@click.option(
    "--target",
    "targets",
    multiple=True,
    default=("onnx",),
    show_default=True,
    help=f"Target: {', '.join(TARGET_CHOICES)} (repeatable or comma list).",
)
@click.option("--model", required=True, help="Registered model name (see `hsnet models`).")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="hsnet checkpoint of MODEL [default: seeded random weights].",
)
@click.option("--num-classes", type=NUM_CLASSES, default=None, help="Classifier width [default: checkpoint's/model's].")
@click.option("--input-size", type=INPUT_SIZE, default=None, help="Square input side [default: checkpoint's/model's].")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fixed batch size [default: 1].")
@click.option("--dynamic-batch", is_flag=True, help="Symbolic batch dimension instead of a fixed one.")
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    default=("fp32",),
    show_default=True,
    help="fp32, fp16, int8 (repeatable or comma list).",
)
@click.option(
    "--calibration",
    default=None,
    help="int8 calibration: a .npy file (float32 NCHW normalized, or uint8 NHWC images) or "
    "'fashion-mnist' [default: Fashion-MNIST train images].",
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (17..20).")
@click.option("--converter", default=None, help="Converter of targets that have several (tflite: onnx2tf, ...).")
@click.option("--bisect", is_flag=True, help="On a parity failure, name the first diverging layer.")
@click.option(
    "--parity-images",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Real Fashion-MNIST test images per parity check.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Runtime threads during parity checks."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random weights and image selection.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder [default: exports/MODEL].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
@user_errors
def export_cmd(
    targets: Sequence[str], model: str, checkpoint: Path | None, num_classes: int | None, input_size: int | None,
    batch: int | None, dynamic_batch: bool, precisions: Sequence[str], calibration: str | None, opset: int,
    converter: str | None, bisect: bool, parity_images: int, threads: int, seed: int, out_dir: Path | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Export MODEL: re-parameterise, ONNX, onnx.checker, onnxsim, then each target, with parity checks.

    Artifacts and manifest.json go to --out; a failed parity check exits non-zero and leaves the failed
    artifact out of the folder.
    """
    from deploy.pipeline import export_model

    if dynamic_batch and batch is not None:
        raise HSNetError("--batch and --dynamic-batch exclude each other; give one")
    calib: Any = calibration
    if calibration is not None and calibration != "fashion-mnist":
        calib = Path(calibration)
    report = export_model(
        model,
        targets=_split(targets),
        precisions=_split(precisions),
        checkpoint=checkpoint,
        num_classes=num_classes,
        input_size=input_size,
        batch=None if dynamic_batch else (batch or 1),
        opset=opset,
        converter=converter,
        calibration=calib,
        out_dir=out_dir or Path("exports") / model,
        bisect=bisect,
        parity_images=parity_images,
        seed=seed,
        threads=threads,
    )
    if as_json:
        emit_json(report.to_dict())
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    from hsnet.profiling.report import format_count, format_table

    rows = []
    for a in report.artifacts:
        p = a.parity
        acc = "-" if p.accuracy_drop is None else f"{p.accuracy_reference:.1f}->{p.accuracy_artifact:.1f}%"
        rows.append(
            (a.target, a.precision, a.path.name, _mb(a.size), a.sha256[:12], f"{p.max_abs_error:.1e}",
             f"{p.max_rel_error:.1e}", f"{100 * p.top1_agreement:.1f}%", acc, p.context())
        )  # fmt: skip
    headers = ["target", "precision", "file", "size", "sha256", "max abs", "max rel", "top-1 agree", "accuracy",
               "measured with"]  # fmt: skip
    click.echo(format_table(headers, rows, "llllllrrrl"))
    images = report.parity[0].images if report.parity else 0
    click.echo(f"\nparity: each artifact vs the PyTorch model ({report.model}, eval mode, not fused) on {images} "
               "real Fashion-MNIST test images")  # fmt: skip
    click.echo(report.simplify.describe())
    g = report.graph
    cc = g.get("cross_check", {})
    click.echo(
        f"graph: {format_count(g.get('params', 0))} parameters, {format_count(g.get('macs_per_image', 0))} MACs per "
        f"image (profiler: {format_count(cc.get('profiler_params', 0))}, {format_count(cc.get('profiler_macs', 0))}; "
        f"{'equal' if cc.get('params_equal') and cc.get('macs_equal') else 'DIFFERENT'})"
    )
    for f in report.findings:
        if f.severity != "info":
            click.echo(f"{f.severity}: [{f.target}] {f.message}")
    infos = sum(f.severity == "info" for f in report.findings)
    if infos:
        click.echo(f"{infos} pre-flight notes (rewrites applied, skipped precisions) in the manifest")
    click.echo(f"manifest: {report.manifest} ({sum(report.timings.values()):.1f} s)")


@deploy.command("verify")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Model to compare against [default: from the artifact or manifest].")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Weights to compare against [default: the artifact's own source].",
)
@click.option("--num-classes", type=NUM_CLASSES, default=None, help="Classifier width (with --model).")
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True, help="Real test images.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Runtime threads.")
@click.option("--bisect", is_flag=True, help="On a parity failure, name the first diverging layer (ONNX).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def verify_cmd(
    artifact: Path, model: str | None, checkpoint: Path | None, num_classes: int | None, images: int, threads: int,
    bisect: bool, as_json: bool,
) -> None:  # fmt: skip
    """Check ARTIFACT's parity against the PyTorch model it was exported from, on real images."""
    from deploy.verify import verify_artifact

    report = verify_artifact(
        artifact, model=model, checkpoint=checkpoint, num_classes=num_classes, images=images, threads=threads,
        bisect=bisect,
    )  # fmt: skip
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(f"{report.model} ({report.weights}): {report.parity.describe()}")


@deploy.command("inspect")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@user_errors
def inspect_cmd(artifact: Path, as_json: bool) -> None:
    """Describe ARTIFACT: input, outputs, metadata, operation counts, size, sha256."""
    from deploy.verify import inspect_artifact

    info = inspect_artifact(artifact)
    if as_json:
        emit_json(info)
        return
    spec = info["input"]
    click.echo(f"{info['path']}: {info['format']} run by {info['runtime']} {info['runtime_version']}")
    click.echo(f"size {_mb(info['size'])}, sha256 {info['sha256']}")
    if "manifest_sha256_matches" in info:
        click.echo(f"matches manifest.json: {'yes' if info['manifest_sha256_matches'] else 'NO'}")
    click.echo(f"input: {spec.get('extra', {}).get('name', '')} {spec['dtype']} {spec['shape']} {spec['layout']}, "
               f"mean {spec['mean']}, std {spec['std']}")  # fmt: skip
    for out in info.get("outputs", []):
        click.echo(f"output: {out.get('name')} {out.get('type', '')} {out.get('shape')}")
    for key, value in info.get("metadata", {}).items():
        click.echo(f"metadata {key}: {value if len(value) <= 100 else value[:97] + '...'}")
    ops = ", ".join(f"{op} {n}" for op, n in sorted(info.get("ops", {}).items(), key=lambda kv: -kv[1]))
    click.echo(f"{info.get('nodes', 0)} nodes: {ops}")
