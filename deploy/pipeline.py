"""The export pipeline: validate everything, then prepare -> ONNX -> check -> onnxsim -> parity -> targets.

:func:`convert` takes any ``torch.nn.Module`` (the user's own network); :func:`export_model` builds a registered
model (and its checkpoint) and hands it to the same code. The options travel as one :class:`ExportRequest`.
Every option is validated before any work and before any folder is created. Each target artifact is converted
in a private staging folder inside the output folder, checked for parity against the PyTorch model, and only
then moved into place (an atomic rename); ``manifest.json`` is written last. A failure (parity included) or
Ctrl-C leaves no partial file and no staging folder: artifacts that passed before it stay, and the manifest is
rewritten to say what happened. Staging folders that a killed run (``kill -9``) left are removed by the next
export into the same folder, with a line saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError, ParityError
from deploy.images import Images, load_calibration, load_images, parity_images
from deploy.manifest import hash_path, manifest_body, write_manifest
from deploy.parity import ParityResult, compare_logits, predict, raise_if_failed, reference_logits
from deploy.request import ArtifactRecord, ExportReport, ExportRequest, request_from
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from hsnet.errors import ToolFailure
from hsnet.toolbox.atomic import pid_alive
from hsnet.toolbox.machine import host_arch, package_version
from hsnet.toolbox.progress import log

__all__ = [
    "ACCURACY_IMAGES",
    "STAGING_PREFIX",
    "accuracy_images",
    "convert",
    "convert_onnx_file",
    "export_model",
    "remove_stale_staging",
    "torch_threads",
]

#: Labelled test images for the int8 accuracy-drop bound (trained weights only), by input side: the whole
#: Fashion-MNIST test split up to 64 px (seconds), 1000 above. On 1000 images the drop estimate is noisy: trained
#: HSNet at 32 px measured a 0.80-point drop on 1000 images and 0.03 points on all 10 000.
ACCURACY_IMAGES = ((64, 10_000), (4096, 1000))
#: Name prefix of the private staging folders inside an output folder (``<prefix><pid>-<random>``).
STAGING_PREFIX = ".hsnet-export-"


def accuracy_images(input_size: int) -> int:
    """How many labelled test images the int8 accuracy bound uses at ``input_size``."""
    return next(count for side, count in ACCURACY_IMAGES if input_size <= side)


@contextmanager
def _stage(timings: dict[str, float], name: str, message: str):  # noqa: ANN202
    log(message)
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 3)


def _publish(src: Path, dst: Path) -> None:
    """Move a finished artifact (file or folder) into place with one rename; a previous one is replaced."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)  # a folder cannot be renamed over a non-empty folder
        try:
            os.replace(src, dst)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first (what ``mkdir(parents=True)`` creates)."""
    missing = []
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    return missing


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove the staging folders that killed exports (``kill -9``, power loss) left in ``out_dir``.

    A staging folder is named ``.hsnet-export-<pid>-<random>``; one whose process no longer runs is stale (one of
    a running export is left alone). Each removal is logged. Returns the removed folders.
    """
    removed = []
    for folder in sorted(Path(out_dir).glob(f"{STAGING_PREFIX}*")):
        pid_text = folder.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and not (pid_text.isdigit() and pid_alive(int(pid_text))):
            shutil.rmtree(folder, ignore_errors=True)
            log(f"[deploy] removed {folder}, left by an export that was killed")
            removed.append(folder)
    return removed


def convert(
    module: Any,
    example_input: Any,
    *,
    name: str = "model",
    labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    request: ExportRequest | None = None,
    **options: Any,
) -> ExportReport:
    """Export any ``torch.nn.Module`` to the requested targets and precisions, proving parity at every stage.

    Args:
        module: the network (anything ``torch.onnx.export`` and ``torch.export`` can trace); not modified.
        example_input: a float32 ``(batch, channels, size, size)`` tensor of the input it runs at; its batch is
            the artifacts' batch unless ``batch`` says otherwise.
        name: the name its files and manifest carry.
        labels: one class name per logit [default: ``class_0``...].
        mean: per-channel normalization mean in 0..1 pixel units [default: 0.5 each].
        std: per-channel std [default: 0.5 each].
        request: the options as one :class:`ExportRequest`; or give its fields as keyword arguments
            (``targets=("onnx", "tflite"), precisions=("fp32", "int8"), images="my_images/", out_dir=...``).

    Returns:
        The :class:`ExportReport` (also written as ``out_dir/manifest.json``).

    Raises:
        HSNetError: any invalid option or input (one line), before any work is done.
        MissingDependencyError: an optional dependency of a selected target is missing (names the extra).
        ParityError: an artifact failed its parity check (it is not moved into ``out_dir``).
        DeployError: a stage failed (export, checker, conversion).
    """
    from deploy.prepare import prepare_module

    if request is None:
        shape = getattr(example_input, "shape", None)
        options.setdefault("batch", int(shape[0]) if shape is not None and len(shape) == 4 else 1)
        request = request_from(options)
    elif options:
        raise DeployError(f"give the options as request= or as keywords, not both ({', '.join(options)})")
    plan, findings = request.plan()
    with torch_threads(request.threads):
        prepared = prepare_module(module, example_input, name=name, labels=labels, mean=mean, std=std)
        return _execute(prepared, request, plan, findings)


def export_model(
    model: str,
    *,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    request: ExportRequest | None = None,
    **options: Any,
) -> ExportReport:
    """Export a registered model (:func:`convert` for the zoo): build it with its weights, then export it.

    Args:
        model: registry name (``hsnet models``).
        checkpoint: hsnet checkpoint of ``model``; ``None`` for seeded random weights (``request.seed``).
        num_classes: classifier width (must match the checkpoint's).
        input_size: square input side (default: the checkpoint's, else the model's).
        request: the options (:class:`ExportRequest`), or its fields as keyword arguments.

    Returns and raises as :func:`convert`.
    """
    from deploy.prepare import prepare_model
    from hsnet.registry import model_info

    model_info(model)  # an unknown name fails first, with close matches
    if request is None:
        request = request_from(options)
    elif options:
        raise DeployError(f"give the options as request= or as keywords, not both ({', '.join(options)})")
    plan, findings = request.plan()
    with torch_threads(request.threads):
        timings: dict[str, float] = {}
        with _stage(timings, "prepare", f"[deploy] preparing {model} (weights, re-parameterisation, rewrites)"):
            prepared = prepare_model(
                model, checkpoint=checkpoint, num_classes=num_classes, input_size=input_size, seed=request.seed
            )
        return _execute(prepared, request, plan, findings, timings)


def convert_onnx_file(
    path: Path | str,
    *,
    name: str | None = None,
    labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    request: ExportRequest | None = None,
    **options: Any,
) -> ExportReport:
    """Export from an ONNX classifier the user already has (no PyTorch module): its simplified fp32 ONNX graph,
    fp16 ONNX and the TFLite precisions, each proven against the user's file run by onnxruntime in fp32.

    Targets that convert the PyTorch module (CoreML, pt2, TFLite's litert-torch) are refused when named and
    skipped, with a finding, under ``all``. The graph's batch is kept: a fixed batch must match ``batch``
    (default: the graph's own). ``opset`` is the file's own; bisect needs the module and is not offered.

    Args:
        path: the ``.onnx`` file (external data beside it, checked before anything is loaded).
        name: the name its files carry [default: the file's stem].
        labels, mean, std, request, options: as for :func:`convert` (mean/std: the normalization the graph
            expects).

    Returns and raises as :func:`convert`.
    """
    from deploy.onnx_import import inspect_onnx, prepare_onnx

    source = inspect_onnx(Path(path))
    if request is None:
        options.setdefault("batch", source.batch)
        request = request_from(options)
    elif options:
        raise DeployError(f"give the options as request= or as keywords, not both ({', '.join(options)})")
    if request.bisect:
        raise DeployError("bisect maps layers of the PyTorch module; an export from an ONNX file has none")
    plan, findings = request.plan()
    kept = []
    for exporter, precision in plan:
        converter = request.converter if request.converter in exporter.converters else None
        if not exporter.needs_module(converter):
            kept.append((exporter, precision))
            continue
        what = f"{exporter.name}" + (f" via {converter}" if converter else "")
        if exporter.name in request.targets:
            raise DeployError(
                f"target {what} converts the PyTorch module, which an ONNX file does not hold; from --onnx hsnet "
                "exports onnx and tflite (onnx2tf); give --model module:callable for the others"
            )
        finding = Finding(exporter.name, "info", f"target skipped: {what} needs the PyTorch module")
        if finding not in findings:
            findings.append(finding)
    with torch_threads(request.threads):
        prepared = prepare_onnx(source.path, name=name, labels=labels, mean=mean, std=std, threads=request.threads)
        return _execute(prepared, request, kept, findings)


def _tuning(artifact: Any) -> dict[str, Any] | None:
    """What ``--tune`` recorded in the artifact's metadata (None: not tuned)."""
    import json

    text = artifact.metadata().get("tuning")
    return None if text is None else json.loads(text)


def _execute(prepared, request: ExportRequest, plan, findings: list[Finding], timings=None) -> ExportReport:  # noqa: ANN001
    """Validate the options against the prepared model, load the images, then run every stage."""
    options_of: dict[tuple[str, str], ExportOptions] = {}
    arch = request.arch or request.tune_site.arch() or host_arch()
    for exporter, precision in plan:
        conv = request.converter if request.converter in exporter.converters else None
        options = ExportOptions(
            precision=precision, batch=request.batch, input_size=prepared.input_size, opset=request.opset,
            converter=conv, tune=request.tune, tune_site=request.tune_site, arch=arch,
        )  # fmt: skip
        exporter.validate(options)
        options_of[(exporter.name, precision)] = options
    p = prepared
    images = load_images(request.images, count=request.parity_images, input_size=p.input_size, mean=p.mean,
                         std=p.std, seed=request.seed)  # fmt: skip
    log(f"[deploy] parity images: {images.description}")
    if images.default and p.trained and tuple(p.labels) != tuple(images.classes or ()):
        findings.append(Finding("onnx", "warning", f"parity runs on {images.description}; give --images DIR|.npy "
                                "to check on your own images"))  # fmt: skip
    for name in p.unfolded_batchnorm[:5]:
        findings.append(Finding("onnx", "info", f"BatchNorm {name} has no Conv/Linear before it to fold into; "
                                "exported as BatchNormalization"))  # fmt: skip
    calib, calib_source = None, None
    if any(pr == "int8" for _, pr in plan):
        source = request.calibration
        if source is None and request.images is not None and not images.default:
            source = request.images
        calib, calib_source = load_calibration(source, input_size=p.input_size, mean=p.mean, std=p.std,
                                               seed=request.seed)  # fmt: skip
    run = _Run(prepared, request, plan, options_of, images, findings, timings or {})
    run.calibration, run.calibration_source = calib, calib_source
    return run.execute()


@contextmanager
def torch_threads(threads: int | None):  # noqa: ANN201
    """Run the block with ``torch.set_num_threads(threads)`` (unchanged for None), restoring the old value."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Run:
    """The work of one export after validation (keeps the state the manifest needs)."""

    def __init__(self, prepared, request: ExportRequest, plan, options_of, images: Images, findings, timings):  # noqa: ANN001
        self.prepared = prepared
        self.request = request
        self.plan = plan
        self.options_of = options_of
        self.images = images
        self.out_dir: Path = Path(request.out_dir)
        self.timings: dict[str, float] = timings
        self.findings: list[Finding] = findings
        self.parity: list[ParityResult] = []
        self.artifacts: list[ArtifactRecord] = []
        self.simplify = None
        self.graph: dict[str, Any] = {}
        self.divergence: dict[str, Any] | None = None
        self.calibration: np.ndarray | None = None
        self.calibration_source: str | None = None
        self.batch = request.batch

    # ---- stages -------------------------------------------------------------------------------------------
    def execute(self) -> ExportReport:
        made = _missing_parents(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.out_dir)
        work = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.out_dir))
        try:
            self._stages(work)
        except BaseException as e:
            shutil.rmtree(work, ignore_errors=True)
            if self.artifacts:  # what is in the folder now must be described truthfully
                status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
                with contextlib.suppress(OSError):  # a full disk: the error being raised says so
                    self._write_manifest(status, str(e) or type(e).__name__)
            for folder in made:  # folders this export created and left empty go again
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                kept = f"; {len(self.artifacts)} checked artifact(s) kept" if self.artifacts else ""
                raise ToolFailure(f"no space left on the device writing into {self.out_dir}{kept}") from None
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        manifest = self._write_manifest("ok", None)
        return ExportReport(
            model=self.prepared.name,
            out_dir=self.out_dir,
            artifacts=self.artifacts,
            manifest=manifest,
            findings=self.findings,
            timings=self.timings,
            parity=self.parity,
            simplify=self.simplify,
            graph=self.graph,
            images=self.images.description,
            reference=_reference_text(self.prepared),
        )

    def _stages(self, work: Path) -> None:
        from deploy.onnx_export import export_onnx
        from deploy.simplify import simplify_onnx

        p = self.prepared
        x, labels = self.images.x, self.images.labels
        self.x = x
        # Accuracy figures only mean something for weights trained on these very classes.
        self.labels = labels if p.trained and tuple(p.labels) == tuple(self.images.classes or ()) else None
        with _stage(self.timings, "reference", f"[deploy] PyTorch reference logits on {len(x)} images"):
            self.reference = reference_logits(p.reference, x)
        raw = work / "exported.onnx"
        if p.onnx is not None:
            from deploy.onnx_import import import_onnx

            with _stage(self.timings, "onnx_import", f"[deploy] {p.onnx.path}: import + onnx.checker"):
                import_onnx(p.onnx, raw, batch=self.batch, metadata=p.metadata().to_strings())
        else:
            torch_threads_now = _torch_threads()
            self._check(reference_logits(p.model, x), "prepare", "fp32", "torch", _torch_version(), torch_threads_now,
                        32)  # fmt: skip
            shape = (self.batch or 1, p.in_chans, p.input_size, p.input_size)
            opset = self.request.opset
            with _stage(self.timings, "onnx_export", f"[deploy] torch.onnx.export (opset {opset}) + onnx.checker"):
                export_onnx(
                    p.model,
                    raw,
                    input_shape=shape,
                    dynamic_batch=self.batch is None,
                    opset=opset,
                    metadata=p.metadata().to_strings(),
                )
        simplified = work / "simplified.onnx"
        with _stage(self.timings, "onnxsim", "[deploy] onnxsim"):
            self.simplify = simplify_onnx(raw, simplified)
        log(f"[deploy] {self.simplify.describe()}")
        if not self.simplify.ok:
            self.findings.append(Finding("onnx", "warning", self.simplify.describe()))
        with _stage(self.timings, "graph_stats", "[deploy] parameters and MACs from the graph vs the profiler"):
            self.graph = _graph_figures(simplified, p)
        check = self.graph.get("cross_check")
        if check is not None and not (check["params_equal"] and check["macs_equal"]):
            self.findings.append(Finding("onnx", "warning", f"graph counts differ from the profiler: {check}"))

        groups: dict[str, tuple[Exporter, list[str]]] = {}  # one conversion run per target, fp32 ONNX first
        for exporter, precision in self.plan:
            groups.setdefault(exporter.name, (exporter, []))[1].append(precision)
        for exporter, precisions in groups.values():
            self._target(exporter, precisions, simplified, work)

    def _context(self, exporter: Exporter, precision: str, onnx_path: Path, work_dir: Path) -> ExportContext:
        p = self.prepared
        return ExportContext(
            model_name=p.name,
            model=p.model,
            onnx_path=onnx_path,
            labels=list(p.labels),
            mean=p.mean,
            std=p.std,
            options=self.options_of[(exporter.name, precision)],
            work_dir=work_dir,
            calibration=self.calibration if precision == "int8" else None,
            metadata=p.metadata(precision=precision).to_strings(),
            rewrites=[f"{r.rewrite} at {r.module}" for r in p.rewrites],
            onnx_simplified=self.simplify.ok,
            fused_model=p.fused,
            images=self.x,
        )

    def _target(self, exporter: Exporter, precisions: list[str], onnx_path: Path, work: Path) -> None:
        """Pre-flight, convert every precision of one target, then check and publish each artifact in turn."""
        p = self.prepared
        target_dir = work / exporter.name
        target_dir.mkdir()
        ctx = self._context(exporter, precisions[0], onnx_path, target_dir)
        if "int8" in precisions:
            ctx.calibration = self.calibration
        found = exporter.preflight(ctx)
        self.findings.extend(f for f in found if f not in self.findings)
        errors = [f for f in found if f.severity == "error"]
        if errors:
            raise DeployError(f"pre-flight for {exporter.name}: {errors[0].message}")
        what = f"{exporter.name} ({', '.join(precisions)})"
        with _stage(self.timings, f"export {exporter.name}", f"[deploy] {what}: converting"):
            paths = exporter.export_all(ctx, precisions)
        for precision in precisions:
            key = f"{exporter.name}/{precision}"
            path = paths[precision]
            with _stage(self.timings, f"parity {key}", f"[deploy] {key}: parity on real images"):
                from deploy.targets import load_artifact

                artifact = load_artifact(path, threads=self.request.threads)
                x, ref, labels = self.x, self.reference, self.labels
                more = accuracy_images(p.input_size)
                if precision == "int8" and labels is not None and self.images.default and len(x) < more:
                    x, labels, _ = parity_images(more, p.input_size, mean=p.mean, std=p.std, seed=self.request.seed)
                    ref = reference_logits(p.reference, x)
                out = predict(artifact, x)
                batch = artifact.input_spec.shape[0] if artifact.input_spec.shape[0] > 0 else 16
                precision_ctx = self._context(exporter, precision, onnx_path, target_dir / f"bisect-{precision}")
                result = self._check(
                    out, key, precision, artifact.runtime, artifact.runtime_version, artifact.threads, batch, ref,
                    labels, path=path, exporter=exporter, ctx=precision_ctx,
                )  # fmt: skip
            dst = self.out_dir / path.name
            _publish(path, dst)
            digest = hash_path(dst)
            self.artifacts.append(
                ArtifactRecord(
                    target=exporter.name,
                    precision=precision,
                    path=dst,
                    size=digest["size"],
                    sha256=digest["sha256"],
                    parity=result,
                    input=artifact.input_spec.to_dict(),
                    files=digest.get("files", {}),
                    tuning=_tuning(artifact),
                )
            )
            log(f"[deploy] {key}: {dst} ({digest['size'] / 1e6:.2f} MB)")

    def _check(
        self,
        output: np.ndarray,
        stage: str,
        precision: str,
        runtime: str,
        version: str,
        threads: int | None,
        batch: int,
        reference: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        *,
        path: Path | None = None,
        exporter: Exporter | None = None,
        ctx: ExportContext | None = None,
    ) -> ParityResult:
        ref = self.reference if reference is None else reference
        result = compare_logits(
            ref, output, precision=precision, stage=stage, runtime=runtime, runtime_version=version,
            threads=threads, batch=batch, labels=labels, source=self.images.source,
        )  # fmt: skip
        self.parity.append(result)
        log(f"[deploy] {result.describe()}")
        if not result.passed and self.request.bisect and path is not None:
            self._bisect(path, precision, exporter, ctx)
        try:
            raise_if_failed(result)
        except ParityError as e:
            if self.divergence:
                raise ParityError(f"{e}; bisect: {self.divergence['description']}") from None
            raise
        return result

    def _bisect(self, path: Path, precision: str, exporter: Exporter | None, ctx: ExportContext | None) -> None:
        from deploy.bisect import bisect_export, bisect_onnx

        with _stage(self.timings, "bisect", f"[deploy] bisect: looking for the first diverging layer of {path.name}"):
            if path.suffix == ".onnx":
                found = bisect_onnx(
                    path, self.prepared.model, self.x, precision=precision, threads=self.request.threads
                )
            else:  # the ONNX graph passed: cut the model and convert prefixes with the same exporter
                found = bisect_export(exporter, ctx, self.x[:8], precision=precision, threads=self.request.threads)
        self.divergence = (
            {**found.to_dict(), "description": found.describe()}
            if found
            else {"description": "every layer is within tolerance; only the final logits differ"}
        )

    # ---- manifest -----------------------------------------------------------------------------------------
    def _write_manifest(self, status: str, error: str | None) -> Path:
        body = manifest_body(
            status=status, error=error, prepared=self.prepared, request=self.request, plan=self.plan,
            options_of=self.options_of, calibration=self.calibration_source, images=self.images.description,
            simplify=self.simplify, graph=self.graph, parity=self.parity, divergence=self.divergence,
            artifacts=self.artifacts, findings=self.findings, timings=self.timings,
        )  # fmt: skip
        return write_manifest(self.out_dir, body)


def _graph_figures(onnx_path: Path, prepared) -> dict[str, Any]:  # noqa: ANN001
    from deploy.graph_stats import cross_check, graph_stats
    from hsnet.profiling import profile_model

    stats = graph_stats(onnx_path)
    if prepared.model is None:  # an ONNX file: the graph is all there is to count
        return stats.to_dict()
    prof = profile_model(prepared.model, prepared.input_size)
    constants = sum(b.numel() for b in prepared.model.buffers() if b.is_floating_point())
    return {**stats.to_dict(), "cross_check": cross_check(stats, prof.params, prof.macs, constants)}


def _reference_text(prepared) -> str:  # noqa: ANN001
    if prepared.onnx is not None:
        return f"{prepared.onnx.path.name} run by onnxruntime {package_version('onnxruntime')} in fp32"
    return f"the PyTorch model ({prepared.name}, eval mode, not fused)"


def _torch_version() -> str:
    import torch

    return torch.__version__


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
