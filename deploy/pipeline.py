"""The export pipeline: validate everything, then prepare -> ONNX -> check -> onnxsim -> parity -> targets.

:func:`export_model` is the one entry point (the CLI and the benchmarks call it). Every option is validated
before any work. Each target artifact is converted in a private folder inside the output folder, checked for
parity against the PyTorch model, and only then moved into place (an atomic rename); ``manifest.json`` is
written last. A failure (parity included) or Ctrl-C leaves no partial file and no temporary folder: artifacts
that passed before it stay, and the manifest is rewritten to say what happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from deploy.artifact import load_artifact
from deploy.errors import DeployError, ParityError
from deploy.manifest import hash_path, write_manifest
from deploy.metadata import INPUT_NAME, OUTPUT_NAME
from deploy.parity import ParityResult, compare_logits, parity_images, predict, raise_if_failed, reference_logits
from deploy.targets.base import PRECISIONS, ExportContext, Exporter, ExportOptions, Finding
from hsnet.io import ensure_writable_dir
from hsnet.progress import log

__all__ = [
    "ArtifactRecord",
    "CALIBRATION_IMAGES",
    "ACCURACY_IMAGES",
    "accuracy_images",
    "ExportReport",
    "export_model",
    "load_calibration",
    "plan_targets",
    "torch_threads",
]

#: Real Fashion-MNIST training images used to calibrate int8 when no ``calibration`` is given.
CALIBRATION_IMAGES = 128
#: Labelled test images for the int8 accuracy-drop bound (trained weights only), by input side: the whole
#: Fashion-MNIST test split up to 64 px (seconds), 1000 above. On 1000 images the drop estimate is noisy: trained
#: HSNet at 32 px measured a 0.80-point drop on 1000 images and 0.03 points on all 10 000.
ACCURACY_IMAGES = ((64, 10_000), (4096, 1000))


def accuracy_images(input_size: int) -> int:
    """How many labelled test images the int8 accuracy bound uses at ``input_size``."""
    return next(count for side, count in ACCURACY_IMAGES if input_size <= side)


@dataclass
class ArtifactRecord:
    """One artifact in the output folder and its parity figures."""

    target: str
    precision: str
    path: Path
    size: int
    sha256: str
    parity: ParityResult
    input: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "file": self.path.name,
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "input": self.input,
            "parity": self.parity.to_dict(),
        }


@dataclass
class ExportReport:
    """What :func:`export_model` produced.

    Attributes:
        model: registry name.
        out_dir: the output folder.
        artifacts: every artifact written, in order (the fp32 ONNX graph first).
        manifest: path of ``manifest.json``.
        findings: pre-flight findings of every target (and skipped combinations).
        timings: seconds per stage.
        parity: every parity check, stage by stage (``prepare``, ``onnx``, then one per artifact).
        simplify: the onnxsim record (``ok`` False when it failed and the unsimplified graph was used).
        graph: parameters/MACs from the exported graph and the profiler's, with the cross-check.
    """

    model: str
    out_dir: Path
    artifacts: list[ArtifactRecord]
    manifest: Path
    findings: list[Finding]
    timings: dict[str, float]
    parity: list[ParityResult]
    simplify: Any
    graph: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "out_dir": str(self.out_dir),
            "manifest": str(self.manifest),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "findings": [f.to_dict() for f in self.findings],
            "timings": self.timings,
            "parity": [p.to_dict() for p in self.parity],
            "onnxsim": self.simplify.to_dict(),
            "graph": self.graph,
        }


def plan_targets(
    targets: Sequence[str], precisions: Sequence[str], converter: str | None, batch: int | None = 1
) -> tuple[list[tuple[Exporter, str]], list[Finding]]:
    """Expand ``all``, check every target/precision/converter, and order the work.

    The fp32 ONNX graph is always the first artifact (every other target starts from it or is checked
    against the same stages). An explicitly named target must support every requested precision and the
    ``batch`` (``None``: dynamic; the exporter's ``validate`` says why not); ``all`` takes, per target, the
    requested precisions it supports, leaves out a target that cannot take the batch, and records each skip
    as a finding.

    Raises:
        DeployError: unknown target, precision or converter (listing the valid ones), or a precision that no
            selected target supports.
    """
    from deploy.targets import EXPORTERS

    if not targets:
        raise DeployError(f"no target given; valid: {', '.join(EXPORTERS)}, all")
    if not precisions:
        raise DeployError(f"no precision given; valid: {', '.join(PRECISIONS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise DeployError(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS)}")
    names: list[str] = []
    explicit: set[str] = set()
    for t in targets:
        if t == "all":
            names += list(EXPORTERS)
        elif t in EXPORTERS:
            names.append(t)
            explicit.add(t)
        else:
            raise DeployError(f"unknown target {t!r}; valid: {', '.join(EXPORTERS)}, all")
    names = list(dict.fromkeys(names))
    skipped: list[Finding] = []
    plan: list[tuple[Exporter, str]] = []
    onnx = EXPORTERS["onnx"]()
    plan.append((onnx, "fp32"))
    for name in names:
        exporter = EXPORTERS[name]()
        problem = exporter.batch_error(batch)
        if problem is not None and name not in explicit and name != "onnx":
            skipped.append(Finding(name, "info", f"target skipped: {problem}"))
            continue
        for p in dict.fromkeys(precisions):
            if p not in exporter.precisions:
                if name in explicit:
                    raise DeployError(
                        f"target {name} does not support precision {p!r}; valid: {', '.join(exporter.precisions)}"
                    )
                skipped.append(
                    Finding(name, "info", f"precision {p} skipped: {name} supports {', '.join(exporter.precisions)}")
                )
                continue
            if (name, p) != ("onnx", "fp32"):
                plan.append((exporter, p))
    requested = {p for _, p in plan} | ({"fp32"} if "fp32" in precisions else set())
    missing = [p for p in precisions if p not in requested]
    if missing:
        raise DeployError(f"no selected target supports precision {missing[0]!r}")
    if converter is not None:
        owners = [e for e, _ in plan if converter in e.converters]
        if not owners:
            valid = sorted({c for e, _ in plan for c in e.converters})
            raise DeployError(f"no selected target has converter {converter!r}; valid: {', '.join(valid)}")
    return plan, skipped


def load_calibration(
    source: Path | str | np.ndarray | None,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    count: int = CALIBRATION_IMAGES,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Calibration images for int8 as float32 NCHW normalized input.

    Args:
        source: ``None`` or ``"fashion-mnist"`` (``count`` real Fashion-MNIST training images), a ``.npy`` file
            or an array: float32 ``(N, C, input_size, input_size)`` already normalized, or uint8 images
            ``(N, H, W, 1|3)`` (resized and normalized here).

    Returns:
        (images, one-line description of where they came from).

    Raises:
        DeployError: unreadable file, or data of the wrong dtype/shape (the message says what is expected).
    """
    chans = len(mean)
    expected = (
        f"expected float32 (N, {chans}, {input_size}, {input_size}) normalized NCHW, or uint8 (N, H, W, 1|3) images"
    )
    if source is None or (isinstance(source, str) and source == "fashion-mnist"):
        x, _, _ = parity_images(count, input_size, mean=mean, std=std, split="train", seed=seed)
        return np.array(x), f"{count} Fashion-MNIST train images"
    what = "calibration array" if isinstance(source, np.ndarray) else f"calibration data {source}"
    arr = _read_calibration(source)
    if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[3] in (1, 3) and len(arr) > 0:
        from hsnet.data import to_model_input

        x = to_model_input(arr, input_size=input_size, in_chans=chans, mean=mean, std=std)
        return x, f"{what}: {len(x)} uint8 images"
    if arr.dtype == np.float32 and arr.shape[1:] == (chans, input_size, input_size) and len(arr) > 0:
        if not np.isfinite(arr).all():
            raise DeployError(f"{what}: contains NaN or infinite values")
        return np.ascontiguousarray(arr), f"{what}: {len(arr)} float32 images"
    raise DeployError(f"{what} has dtype {arr.dtype} and shape {tuple(arr.shape)}; {expected}")


def _read_calibration(source: Path | str | np.ndarray | None) -> np.ndarray | str | None:
    """Load a calibration ``.npy`` and check its layout (the size is checked by :func:`load_calibration`).

    Raises:
        DeployError: not a .npy file, unreadable, or neither float32 NCHW nor uint8 NHWC images.
    """
    if source is None or isinstance(source, np.ndarray) or source == "fashion-mnist":
        arr = source
    else:
        path = Path(source)
        if path.suffix.lower() != ".npy":
            raise DeployError(f"calibration data {path}: give a .npy file or 'fashion-mnist'")
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DeployError(f"calibration data {path}: no such file") from None
        except (OSError, ValueError, EOFError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DeployError(f"calibration data {path}: not a readable .npy array ({first})") from None
    if isinstance(arr, np.ndarray):
        nchw_float = arr.dtype == np.float32 and arr.ndim == 4
        nhwc_uint8 = arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[3] in (1, 3)
        if not (nchw_float or nhwc_uint8) or len(arr) == 0:
            what = "calibration array" if isinstance(source, np.ndarray) else f"calibration data {source}"
            raise DeployError(
                f"{what} has dtype {arr.dtype} and shape {tuple(arr.shape)}; expected float32 (N, C, H, W) "
                "normalized NCHW, or uint8 (N, H, W, 1|3) images"
            )
    return arr


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


def export_model(
    model: str,
    *,
    targets: Sequence[str] = ("onnx",),
    precisions: Sequence[str] = ("fp32",),
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    batch: int | None = 1,
    opset: int = 17,
    converter: str | None = None,
    calibration: Path | np.ndarray | None = None,
    out_dir: Path,
    bisect: bool = False,
    parity_images: int = 64,
    seed: int = 0,
    threads: int | None = 1,
) -> ExportReport:
    """Export a registered model to the requested targets and precisions, proving parity at every stage.

    Args:
        model: registry name (``hsnet models``).
        targets: ``onnx``, ``tflite``, ``coreml`` or ``all``; the fp32 ONNX graph is always produced.
        precisions: ``fp32``, ``fp16``, ``int8`` (each named target must support each one; ``all`` skips what
            a target lacks and says so in the findings).
        checkpoint: hsnet checkpoint of ``model``; ``None`` for seeded random weights.
        num_classes: classifier width (must match the checkpoint's).
        input_size: square input side (default: the checkpoint's, else the model's).
        batch: fixed batch, or ``None`` for a dynamic batch dimension.
        opset: ONNX opset, 17..20.
        converter: converter of the targets that offer several (e.g. TFLite's ``onnx2tf``/``litert-torch``).
        calibration: int8 calibration data (see :func:`load_calibration`); only with an int8 precision.
        out_dir: output folder (created; must be writable).
        bisect: on a parity failure, find and name the first diverging layer.
        parity_images: number of real test images for each parity check.
        seed: seed of random weights and of the image selection.
        threads: intra-op threads of PyTorch and of the runtimes during the export and its parity checks
            (``None``: their defaults). One thread by default: on a shared or small machine extra threads wait
            on each other more than they compute.

    Returns:
        The :class:`ExportReport` (also written as ``out_dir/manifest.json``).

    Raises:
        HSNetError: any invalid option or input (one line), before any work is done.
        MissingDependencyError: an optional dependency of a selected target is missing (names the extra).
        ParityError: an artifact failed its parity check (it is not moved into ``out_dir``).
        DeployError: a stage failed (export, checker, conversion).
    """
    with torch_threads(threads):
        return _export_model(
            model, targets=targets, precisions=precisions, checkpoint=checkpoint, num_classes=num_classes,
            input_size=input_size, batch=batch, opset=opset, converter=converter, calibration=calibration,
            out_dir=out_dir, bisect=bisect, parity_images=parity_images, seed=seed, threads=threads,
        )  # fmt: skip


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


def _export_model(model: str, *, targets, precisions, checkpoint, num_classes, input_size, batch, opset,  # noqa: ANN001
                  converter, calibration, out_dir, bisect, parity_images, seed, threads) -> ExportReport:  # fmt: skip
    from deploy.onnx_export import check_opset
    from hsnet.registry import model_info

    # ---- validate everything before any work --------------------------------------------------------------
    model_info(model)
    check_opset(opset)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise DeployError(f"batch must be a positive integer or None (dynamic), got {batch!r}")
    plan, findings = plan_targets(targets, precisions, converter, batch)
    if isinstance(parity_images, bool) or not isinstance(parity_images, int) or parity_images < 1:
        raise DeployError(f"parity_images must be a positive integer, got {parity_images!r}")
    wants_int8 = any(p == "int8" for _, p in plan)
    if calibration is not None and not wants_int8:
        raise DeployError("calibration data is only used for int8; no int8 artifact was requested")
    _read_calibration(calibration)  # file and layout now; the size once the model is known (read again then)
    out_dir = ensure_writable_dir(out_dir)
    for exporter, precision in plan:
        conv = converter if converter in exporter.converters else None
        exporter.check_available(ExportOptions(precision=precision, batch=batch, opset=opset, converter=conv))

    from deploy.prepare import prepare_model

    timings: dict[str, float] = {}
    with _stage(timings, "prepare", f"[deploy] preparing {model} (weights, re-parameterisation, rewrites)"):
        prepared = prepare_model(
            model, checkpoint=checkpoint, num_classes=num_classes, input_size=input_size, seed=seed
        )
    options_of: dict[tuple[str, str], ExportOptions] = {}
    for exporter, precision in plan:
        conv = converter if converter in exporter.converters else None
        options = ExportOptions(
            precision=precision, batch=batch, input_size=prepared.input_size, opset=opset, converter=conv
        )
        exporter.validate(options)
        options_of[(exporter.name, precision)] = options
    calib, calib_source = (None, None)
    if wants_int8:
        calib, calib_source = load_calibration(
            calibration, input_size=prepared.input_size, mean=prepared.mean, std=prepared.std, seed=seed
        )

    run = _Run(prepared, plan, options_of, out_dir, timings, findings, bisect, parity_images, seed, threads)
    run.calibration, run.calibration_source = calib, calib_source
    return run.execute()


class _Run:
    """The work of one :func:`export_model` call after validation (keeps the state the manifest needs)."""

    def __init__(self, prepared, plan, options_of, out_dir, timings, findings, bisect, images, seed, threads):  # noqa: ANN001
        self.prepared = prepared
        self.plan = plan
        self.options_of = options_of
        self.out_dir: Path = out_dir
        self.timings: dict[str, float] = timings
        self.findings: list[Finding] = findings
        self.bisect = bisect
        self.images = images
        self.seed = seed
        self.threads = threads
        self.parity: list[ParityResult] = []
        self.artifacts: list[ArtifactRecord] = []
        self.simplify = None
        self.graph: dict[str, Any] = {}
        self.divergence: dict[str, Any] | None = None
        self.calibration: np.ndarray | None = None
        self.calibration_source: str | None = None
        self.batch = next(iter(options_of.values())).batch

    # ---- stages -------------------------------------------------------------------------------------------
    def execute(self) -> ExportReport:
        work = Path(tempfile.mkdtemp(prefix=".hsnet-export-", dir=self.out_dir))
        try:
            self._stages(work)
        except BaseException as e:
            if self.artifacts:  # what is in the folder now must be described truthfully
                status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
                self._write_manifest(status, str(e) or type(e).__name__)
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
        )

    def _stages(self, work: Path) -> None:
        from deploy.onnx_export import export_onnx
        from deploy.simplify import simplify_onnx

        p = self.prepared
        x, labels, classes = parity_images(self.images, p.input_size, mean=p.mean, std=p.std, seed=self.seed)
        self.x = x
        # Accuracy figures only mean something for weights trained on these very classes.
        self.labels = labels if p.checkpoint is not None and tuple(p.labels) == tuple(classes) else None
        with _stage(self.timings, "reference", f"[deploy] PyTorch reference logits on {len(x)} images"):
            self.reference = reference_logits(p.reference, x)
        torch_threads_now = _torch_threads()
        self._check(reference_logits(p.model, x), "prepare", "fp32", "torch", _torch_version(), torch_threads_now, 32)

        shape = (self.batch or 1, p.in_chans, p.input_size, p.input_size)
        opset = next(iter(self.options_of.values())).opset
        raw = work / "exported.onnx"
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
        if not (self.graph["cross_check"]["params_equal"] and self.graph["cross_check"]["macs_equal"]):
            self.findings.append(
                Finding("onnx", "warning", f"graph counts differ from the profiler: {self.graph['cross_check']}")
            )

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
                artifact = load_artifact(path, threads=self.threads)
                x, ref, labels = self.x, self.reference, self.labels
                if precision == "int8" and labels is not None and len(x) < (n := accuracy_images(p.input_size)):
                    x, labels, _ = parity_images(n, p.input_size, mean=p.mean, std=p.std, seed=self.seed)
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
            threads=threads, batch=batch, labels=labels,
        )  # fmt: skip
        self.parity.append(result)
        log(f"[deploy] {result.describe()}")
        if not result.passed and self.bisect and path is not None:
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
                found = bisect_onnx(path, self.prepared.model, self.x, precision=precision, threads=self.threads)
            else:  # the ONNX graph passed: cut the model and convert prefixes with the same exporter
                found = bisect_export(exporter, ctx, self.x[:8], precision=precision, threads=self.threads)
        self.divergence = (
            {**found.to_dict(), "description": found.describe()}
            if found
            else {"description": "every layer is within tolerance; only the final logits differ"}
        )

    # ---- manifest -----------------------------------------------------------------------------------------
    def _write_manifest(self, status: str, error: str | None) -> Path:
        from deploy.versions import machine, tool_versions

        p = self.prepared
        ckpt_sha = p.metadata().checkpoint_sha256
        extra_tools: dict[str, str] = {}
        for exporter, _ in self.plan:
            extra_tools.update(exporter.tool_versions())
        files = {}
        for record in self.artifacts:
            files[record.path.name] = {"sha256": record.sha256, "size": record.size}
            for name, info in record.files.items():
                files[f"{record.path.name}/{name}"] = info
        body = {
            "status": status,
            "error": error,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": p.name,
            "weights": p.weights,
            "checkpoint": None if p.checkpoint is None else {"path": str(p.checkpoint.resolve()), "sha256": ckpt_sha},
            "hsnet_version": p.metadata().hsnet_version,
            "tools": {**tool_versions(), **extra_tools},
            "machine": machine(),
            "input": {
                "name": INPUT_NAME,
                "shape": [self.batch if self.batch else -1, p.in_chans, p.input_size, p.input_size],
                "layout": "NCHW",
                "dtype": "float32",
                "mean": list(p.mean),
                "std": list(p.std),
                "normalization": "(pixel / 255 - mean) / std, per channel",
            },
            "output": {"name": OUTPUT_NAME, "shape": [self.batch if self.batch else -1, p.num_classes]},
            "labels": list(p.labels),
            "options": {
                "targets": list(dict.fromkeys(e.name for e, _ in self.plan)),
                "precisions": list(dict.fromkeys(pr for _, pr in self.plan)),
                "batch": self.batch,
                "opset": next(iter(self.options_of.values())).opset,
                "converters": {f"{k[0]}/{k[1]}": o.converter for k, o in self.options_of.items()},
                "calibration": self.calibration_source,
                "parity_images": self.images,
                "seed": self.seed,
                "threads": self.threads,
            },
            "rewrites": [r.to_dict() for r in p.rewrites],
            "onnx": None if self.simplify is None else {
                "nodes_before_simplification": self.simplify.nodes_before,
                "nodes_after_simplification": self.simplify.nodes_after,
                "onnxsim_ok": self.simplify.ok,
                "onnxsim": self.simplify.to_dict(),
            },
            "graph": self.graph,
            "parity": [r.to_dict() for r in self.parity],
            "bisect": self.divergence,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "files": files,
            "findings": [f.to_dict() for f in self.findings],
            "timings": self.timings,
        }  # fmt: skip
        return write_manifest(self.out_dir, body)


def _graph_figures(onnx_path: Path, prepared) -> dict[str, Any]:  # noqa: ANN001
    from deploy.graph_stats import cross_check, graph_stats
    from hsnet.profiling import profile_model

    stats = graph_stats(onnx_path)
    prof = profile_model(prepared.model, prepared.input_size)
    constants = sum(b.numel() for b in prepared.model.buffers() if b.is_floating_point())
    return {**stats.to_dict(), "cross_check": cross_check(stats, prof.params, prof.macs, constants)}


def _torch_version() -> str:
    import torch

    return torch.__version__


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
