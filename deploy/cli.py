"""``hsnet deploy export|verify|inspect``: a thin click layer over :mod:`deploy.pipeline` and :mod:`deploy.verify`.

Heavy modules (torch, onnx, converters) are imported inside the commands, so ``hsnet --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from hsnet.errors import HSNetError
from hsnet.toolbox.cli import INPUT_SIZE, NUM_CLASSES, emit_json, user_errors
from hsnet.toolbox.machine import ARCHES

__all__ = ["deploy"]

TARGET_CHOICES = ("onnx", "coreml", "tflite", "pt2", "all")


def _split(values: Sequence[str]) -> list[str]:
    """Repeatable options that also take comma lists: ``--precision fp32,fp16 --precision int8``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in _split([text]))
    except ValueError:
        raise HSNetError(f"{flag} takes comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None


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
@click.option(
    "--model",
    default="hsnet",
    show_default=True,
    help="A registered name (`hsnet models`), or your own network: module:callable or path/to/file.py:callable "
    "returning a torch.nn.Module (with --input-shape).",
)
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Start from an ONNX classifier you already have (targets onnx and tflite; parity against the file "
    "itself in onnxruntime). Instead of --model.",
)
@click.option("--input-shape", default=None, help="Your network's input, B,C,H,W (e.g. 1,3,160,160; square).")
@click.option("--labels", default=None, help="Your network's class names, comma-separated [default: class_0...].")
@click.option("--mean", default=None, help="Your network's per-channel mean, 0..1 units, comma-separated [0.5].")
@click.option("--std", default=None, help="Your network's per-channel std, comma-separated [0.5].")
@click.option(
    "--images",
    default=None,
    help="Parity images (and int8 calibration by default): an image folder (one sub-folder per class) or a .npy "
    "[default: Fashion-MNIST resized to the input, which proves parity, not accuracy in your domain].",
)
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
@click.option("--tune", is_flag=True, help="ONNX fp32 and int8: time each grouped convolution's exact variants (group "
              "counts) in onnxruntime here and keep the fastest; the manifest records choices and gains.")  # fmt: skip
@click.option("--remote", default=None, metavar="DEVICE", help="With --tune: measure the variants on this device "
              "(ssh://[user@]host[:port]: timed; qemu:cortex-a53|a72|a76: instructions counted) instead of here; "
              "--arch becomes the device's.")  # fmt: skip
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="With --remote: ssh -o.")
@click.option("--ssh-config", default=None, help="With --remote: an ssh config file instead of ~/.ssh/config.")
@click.option("--arch", type=click.Choice(ARCHES), default=None, help="The CPU family the artifacts are for: decides "
              "the layer variants measured to win there (TFLite int8 fills grouped convolutions on x86_64 only) "
              "[default: this machine's, or the --remote device's].")  # fmt: skip
@click.option(
    "--parity-images",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="The most images per parity check.",
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
@click.pass_context
def export_cmd(
    click_ctx: click.Context, targets: Sequence[str], model: str, onnx_file: Path | None, input_shape: str | None,
    labels: str | None, mean: str | None, std: str | None, images: str | None, checkpoint: Path | None,
    num_classes: int | None, input_size: int | None,
    batch: int | None, dynamic_batch: bool, precisions: Sequence[str], calibration: str | None, opset: int,
    converter: str | None, bisect: bool, tune: bool, remote: str | None, ssh_options: tuple[str, ...],
    ssh_config: str | None, arch: str | None, parity_images: int, threads: int, seed: int,
    out_dir: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Export MODEL: re-parameterise, ONNX, onnx.checker, onnxsim, then each target, with parity checks.

    Artifacts and manifest.json go to --out; a failed parity check exits non-zero and leaves the failed
    artifact out of the folder.
    """
    from deploy.pipeline import convert, convert_onnx_file, export_model
    from deploy.request import ExportRequest
    from deploy.user_model import is_spec, load_user_model, parse_input_shape

    if onnx_file is not None:
        given = click_ctx.get_parameter_source
        other = [f"--{n.replace('_', '-')}" for n, v in (("model", model), ("checkpoint", checkpoint),
                 ("num_classes", num_classes), ("input_size", input_size), ("input_shape", input_shape),
                 ("opset", opset)) if v is not None and given(n) is not click.core.ParameterSource.DEFAULT]  # fmt: skip
        if other:
            raise HSNetError(f"--onnx takes the model, its input size and opset from the file; drop {', '.join(other)}")
    if dynamic_batch and batch is not None:
        raise HSNetError("--batch and --dynamic-batch exclude each other; give one")
    if (ssh_options or ssh_config) and remote is None:
        raise HSNetError("--ssh-option and --ssh-config need --remote DEVICE")
    from deploy.tuning import TuneSite

    site = TuneSite(remote, tuple(ssh_options), ssh_config)
    calib: Any = calibration
    if calibration is not None and calibration != "fashion-mnist":
        calib = Path(calibration)
    user = is_spec(model) and onnx_file is None
    if user and input_shape is None:
        raise HSNetError(f"--model {model} is your own network: give its input with --input-shape B,C,H,W")
    if not user and onnx_file is None:
        own = [f"--{n}" for n, v in (("input-shape", input_shape), ("labels", labels), ("mean", mean),
                                      ("std", std)) if v is not None]  # fmt: skip
        if own:
            raise HSNetError(
                f"{', '.join(own)} describe your own network (--model module:callable); {model} is a registered "
                "model: use --input-size, --num-classes, --checkpoint"
            )
    shape = parse_input_shape(input_shape) if user else None
    fixed = None if dynamic_batch else (batch or (shape[0] if shape else 1))
    if onnx_file is not None and not dynamic_batch and batch is None:
        from deploy.onnx_import import inspect_onnx

        fixed = inspect_onnx(onnx_file).batch  # the file's own batch (None: symbolic, kept)
    default_out = onnx_file.stem if onnx_file is not None else model.rpartition(":")[2] if user else model
    request = ExportRequest(
        targets=tuple(_split(targets)), precisions=tuple(_split(precisions)),
        out_dir=out_dir or Path("exports") / default_out, batch=fixed,
        opset=opset, converter=converter, images=Path(images) if images else None, calibration=calib,
        parity_images=parity_images, bisect=bisect, seed=seed, threads=threads, tune=tune, arch=arch,
        tune_site=site,
    )  # fmt: skip
    if onnx_file is not None:
        report = convert_onnx_file(
            onnx_file, labels=_split([labels]) if labels else None, mean=_floats("--mean", mean),
            std=_floats("--std", std), request=request,
        )  # fmt: skip
    elif user:
        for flag, value in (("--checkpoint", checkpoint), ("--num-classes", num_classes), ("--input-size", input_size)):
            if value is not None:
                raise HSNetError(f"{flag} is for registered models; your callable builds its own network "
                                 "(load its weights there)")  # fmt: skip
        request.plan()  # every option checked before your code runs
        import torch

        module, name = load_user_model(model)
        report = convert(
            module, torch.zeros(shape), name=name, labels=_split([labels]) if labels else None,
            mean=_floats("--mean", mean), std=_floats("--std", std), request=request,
        )  # fmt: skip
    else:
        report = export_model(model, checkpoint=checkpoint, num_classes=num_classes, input_size=input_size,
                              request=request)  # fmt: skip
    if as_json:
        emit_json(report.to_dict())
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    from hsnet.toolbox.tables import format_count, format_table

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
    click.echo(f"\nparity: each artifact vs {report.reference} on {report.images}")
    click.echo(report.simplify.describe())
    g = report.graph
    cc = g.get("cross_check")
    counted = f"graph: {format_count(g.get('params', 0))} parameters, {format_count(g.get('macs_per_image', 0))} MACs"
    if cc is None:
        click.echo(f"{counted} per image (counted from the graph)")
    else:
        same = "equal" if cc.get("params_equal") and cc.get("macs_equal") else "DIFFERENT"
        click.echo(f"{counted} per image (profiler: {format_count(cc.get('profiler_params', 0))}, "
                   f"{format_count(cc.get('profiler_macs', 0))}; {same})")  # fmt: skip
    for f in report.findings:
        if f.severity != "info":
            click.echo(f"{f.severity}: [{f.target}] {f.message}")
    infos = sum(f.severity == "info" for f in report.findings)
    if infos:
        click.echo(f"{infos} pre-flight notes (rewrites applied, skipped precisions) in the manifest")
    click.echo(f"manifest: {report.manifest} ({sum(report.timings.values()):.1f} s)")


@deploy.command("verify")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option(
    "--model",
    default=None,
    help="Compare against this model: a registered name, or module:callable / file.py:callable of your own "
    "network [default: what the artifact's metadata or manifest names].",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reference logits (.npy, images x classes) of the --images, computed wherever your model runs.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Weights to compare against [default: the artifact's own source].",
)
@click.option("--num-classes", type=NUM_CLASSES, default=None, help="Classifier width (with --model).")
@click.option("--mean", default=None, help="Normalization of an artifact without metadata, comma-separated [0.5].")
@click.option("--std", default=None, help="Normalization of an artifact without metadata, comma-separated [0.5].")
@click.option(
    "--images",
    default=None,
    help="An image folder or .npy to compare on [default: Fashion-MNIST test images]; a number N alone means N "
    "Fashion-MNIST images (as --count).",
)
@click.option("--count", type=click.IntRange(min=1), default=64, show_default=True, help="The most images.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Runtime threads.")
@click.option("--bisect", is_flag=True, help="On a parity failure, name the first diverging layer (ONNX).")
@click.option("--remote", default=None, metavar="DEVICE", help="Run the artifact on this device (ssh://[user@]host"
              "[:port] or qemu:cortex-a53|a72|a76): its own kernels, the same images and tolerances.")  # fmt: skip
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="With --remote: ssh -o.")
@click.option("--ssh-config", default=None, help="With --remote: an ssh config file instead of ~/.ssh/config.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@user_errors
def verify_cmd(
    artifact: Path, model: str | None, reference: Path | None, checkpoint: Path | None, num_classes: int | None,
    mean: str | None, std: str | None, images: str | None, count: int, threads: int, bisect: bool,
    remote: str | None, ssh_options: tuple[str, ...], ssh_config: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Check ARTIFACT's parity against the PyTorch model it was exported from (or your model, or logits)."""
    import numpy as np

    from deploy.user_model import is_spec, load_user_model
    from deploy.verify import verify_artifact

    if (ssh_options or ssh_config) and remote is None:
        raise HSNetError("--ssh-option and --ssh-config need --remote DEVICE")
    source: Path | None = None
    if images is not None and images.isdigit():
        count = int(images)
    elif images is not None:
        source = Path(images)
    module = None
    if model is not None and is_spec(model):
        module, _ = load_user_model(model)
        model = None
    ref = None
    if reference is not None:
        try:
            ref = np.load(reference, allow_pickle=False)
        except FileNotFoundError:
            raise HSNetError(f"--reference {reference}: no such file") from None
        except (OSError, ValueError, EOFError) as e:
            raise HSNetError(f"--reference {reference}: not a readable .npy array ({e})") from None
    report = verify_artifact(
        artifact, model=model, module=module, reference=ref, image_source=source, checkpoint=checkpoint,
        num_classes=num_classes, mean=_floats("--mean", mean), std=_floats("--std", std), images=count,
        threads=threads, bisect=bisect, remote=remote, ssh_options=ssh_options, ssh_config=ssh_config,
    )  # fmt: skip
    if as_json:
        emit_json(report.to_dict())
        return
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{report.model} ({report.weights}): {report.parity.describe()}")
    click.echo(f"images: {report.images}")


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


@deploy.command("coreml-survey")
@click.option("--models", default="*", show_default=True, help="Shell pattern of registered names.")
@click.option("--input-size", type=INPUT_SIZE, default=32, show_default=True)
@click.option("--precision", "precisions", default="fp32,fp16", show_default=True, help="fp32, fp16 (comma list).")
@click.option("--count", type=click.IntRange(min=1), default=8, show_default=True, help="Real test images each.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def coreml_survey_cmd(models: str, input_size: int, precisions: str, count: int, as_json: bool) -> None:
    """Convert registered models to CoreML and check the numpy ML Program evaluator against PyTorch (exit 1 if
    any fails): the tool behind the operation-coverage list in docs/deploy.md."""
    from deploy.targets.coreml.survey import survey
    from hsnet.errors import CheckFailed
    from hsnet.registry import list_models

    names = list_models(models)
    if not names:
        raise HSNetError(f"no registered model matches {models!r}; valid names: {', '.join(list_models())}")
    chosen = tuple(_split([precisions]))
    bad = [p for p in chosen if p not in ("fp32", "fp16")]
    if bad or not chosen:
        raise HSNetError(f"--precision {precisions!r}: valid: fp32, fp16")
    rows = survey(names, input_size=input_size, precisions=chosen, images=count)
    union = sorted({op for r in rows for op in r.ops})
    if as_json:
        emit_json({"rows": [r.__dict__ | {"passed": r.passed} for r in rows], "ops": union})
    else:
        click.echo(f"{'model':24s} {'prec':4s} {'convert':>8s} {'eval/img':>9s} {'max rel':>9s} {'top-1':>6s}  result")
        for r in rows:
            p = r.parity or {}
            rel = f"{p['max_rel_error']:.2e}" if p else "-"
            top1 = f"{100 * p['top1_agreement']:.0f}%" if p else "-"
            verdict = "ok" if r.passed else (r.error or "; ".join(p.get("failures", [])))
            click.echo(f"{r.model:24s} {r.precision:4s} {r.convert_s:7.1f}s {r.eval_ms:7.1f}ms {rel:>9s} {top1:>6s}  "
                       f"{verdict}")  # fmt: skip
        click.echo(f"MIL operations used ({len(union)}): {', '.join(union)}")
        click.echo(f"[{input_size}x{input_size}, {count} Fashion-MNIST test images, seeded random weights, numpy "
                   "evaluator]")  # fmt: skip
    failed = [f"{r.model}/{r.precision}" for r in rows if not r.passed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(rows)} conversions failed: {', '.join(failed[:5])}")
