"""The common interface of every export target (one exporter per file in this package).

An exporter turns the prepared model of an :class:`ExportContext` into one artifact file. Everything target
specific (optional dependencies, supported precisions, pre-flight checks, conversion) lives in the exporter; the
pipeline (:mod:`deploy.pipeline`) only calls this interface.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from deploy.errors import DeployError
from deploy.preflight import Finding, graph_findings
from deploy.tuning import TuneSite
from hsnet.toolbox.machine import host_arch, package_version

__all__ = ["ExportContext", "ExportOptions", "Exporter", "Finding", "PRECISIONS"]

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportOptions:
    """What the user asked for, validated per target by :meth:`Exporter.validate`.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        batch: fixed batch size, or ``None`` for a dynamic batch dimension.
        input_size: square input side in pixels.
        opset: ONNX opset of the intermediate ONNX graph.
        converter: target-specific converter name (``None`` = the target's default).
        tune: measure the exact variants of each layer on the target runtime and keep the fastest (``--tune``;
            targets with :attr:`Exporter.tuner` only).
        tune_site: where ``--tune`` measures (here, or a ``--remote`` device).
        arch: the CPU family the artifact is for (:data:`hsnet.toolbox.machine.ARCHES`): without ``--tune`` a
            target applies the layer variants measured to win there (TFLite int8: grouped convolutions filled on
            x86-64 only).
    """

    precision: str = "fp32"
    batch: int | None = 1
    input_size: int = 224
    opset: int = 17
    converter: str | None = None
    tune: bool = False
    tune_site: TuneSite = field(default_factory=TuneSite)
    arch: str = field(default_factory=host_arch)


@dataclass
class ExportContext:
    """Everything an exporter may use. Built once per export by the pipeline.

    Attributes:
        model_name: registry name of the model.
        model: the reparameterized, export-rewritten PyTorch model in eval mode (float32, CPU); ``None`` for an
            export that starts from an ONNX file (only exporters whose converter :meth:`Exporter.needs_module`
            is False run then).
        onnx_path: the checked and simplified ONNX graph of ``model`` (the ONNX-centered route starts here).
        labels: class names, one per logit.
        mean: per-channel normalization mean (0..1 pixel units).
        std: per-channel normalization std.
        options: the validated :class:`ExportOptions`.
        calibration: float32 NCHW normalized real images for int8 calibration (``None`` if not needed).
        work_dir: a private temporary folder; the exporter writes its artifact here and the pipeline moves it
            into the output folder atomically once parity has passed.
        metadata: string key/values to embed in the artifact (model name, version, labels, normalization); the
            keys are those of :class:`deploy.metadata.ModelMetadata`.
        rewrites: names of the export rewrites applied to ``model`` (:mod:`deploy.rewrites`), for pre-flight.
        onnx_simplified: False when onnxsim failed and ``onnx_path`` is the checked but unsimplified graph.
        fused_model: the model re-parameterised but not rewritten (what PyTorch itself runs: the pt2 target);
            ``None`` means ``model``.
        images: the parity images (float32 NCHW, normalized), for exporters that check their own rewrites.
    """

    model_name: str
    model: torch.nn.Module | None
    onnx_path: Path
    labels: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    options: ExportOptions
    work_dir: Path
    calibration: np.ndarray | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    rewrites: list[str] = field(default_factory=list)
    onnx_simplified: bool = True
    fused_model: torch.nn.Module | None = None
    images: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """Number of logits."""
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """NCHW shape of one call of the model (batch 1 stands in for a dynamic batch)."""
        size = self.options.input_size
        return (self.options.batch or 1, len(self.mean), size, size)


class Exporter(abc.ABC):
    """One export target.

    Class attributes:
        name: target name used on the command line (``onnx``, ``tflite``, ``coreml``).
        suffix: artifact suffix (``.onnx``, ``.tflite``, ``.mlpackage``).
        extra: the pip extra that provides the optional dependencies (``hsnet[<extra>]``).
        precisions: supported precisions.
        converters: supported converter names, the default first.
        unsupported_ops: ONNX operation types the target cannot run; the default :meth:`preflight` reports each
            one found in the graph as an error (the pipeline then stops before converting).
        supports_dynamic_batch: False makes :meth:`batch_error` (and so :meth:`validate`) reject ``batch=None``.
        distributions: the pip distributions that convert or run this target's artifacts; their versions go
            into the manifest and into the benchmark cache key.
        module_converters: the converters that convert the PyTorch module, not the ONNX graph (an export that
            starts from an ONNX file has no module: :meth:`needs_module`).
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    extra: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    converters: ClassVar[tuple[str, ...]] = ("default",)
    unsupported_ops: ClassVar[frozenset[str]] = frozenset()
    supports_dynamic_batch: ClassVar[bool] = True
    distributions: ClassVar[tuple[str, ...]] = ()
    module_converters: ClassVar[frozenset[str]] = frozenset()
    #: What ``--tune`` measures for this target, or None when it has no tuner.
    tuner: ClassVar[str | None] = None

    def needs_module(self, converter: str | None = None) -> bool:
        """True when ``converter`` (``None``: the default) converts the PyTorch module rather than the ONNX graph."""
        return (converter if converter in self.converters else self.converters[0]) in self.module_converters

    @abc.abstractmethod
    def check_available(self, options: ExportOptions) -> None:
        """Raise :class:`deploy.errors.MissingDependencyError` if a needed optional module is missing."""

    def validate(self, options: ExportOptions) -> None:
        """Reject options this target cannot honour, with a message listing the valid ones."""
        if options.precision not in self.precisions:
            raise DeployError(
                f"target {self.name} does not support precision {options.precision!r}; "
                f"valid: {', '.join(self.precisions)}"
            )
        if options.converter is not None and options.converter not in self.converters:
            raise DeployError(
                f"target {self.name} has no converter {options.converter!r}; valid: {', '.join(self.converters)}"
            )
        problem = self.batch_error(options.batch)
        if problem is not None:
            raise DeployError(problem)
        if options.tune and self.tuner is None:
            raise DeployError(f"--tune: target {self.name} has no tuner (it measures variants in onnxruntime on this "
                              "machine: --target onnx)")  # fmt: skip

    def batch_error(self, batch: int | None) -> str | None:
        """Why this target cannot take ``batch`` (``None``: dynamic), or ``None`` when it can."""
        if batch is None and not self.supports_dynamic_batch:
            return f"target {self.name} needs a fixed batch; use --batch N instead of --dynamic-batch"
        return None

    def preflight(self, ctx: ExportContext) -> list[Finding]:
        """Report known trouble for this target in ``ctx``'s graph before converting.

        The default scans ``ctx.onnx_path`` (:func:`deploy.preflight.scan_graph`): rank-5 reshapes/transposes,
        1-D convolutions, dynamic dimensions (warnings), operations in :attr:`unsupported_ops` (errors), and lists
        the rewrites in ``ctx.rewrites`` (info). Override to add target-specific checks; call ``super()`` first.
        """
        return graph_findings(
            self.name, ctx.onnx_path, ctx.rewrites, dynamic_batch_ok=self.supports_dynamic_batch,
            unsupported_ops=self.unsupported_ops,
        )  # fmt: skip

    def artifact_name(self, ctx: ExportContext) -> str:
        """File name of the artifact, unique per model and precision."""
        return f"{ctx.model_name}_{ctx.options.precision}{self.suffix}"

    @abc.abstractmethod
    def export(self, ctx: ExportContext) -> Path:
        """Convert and write the artifact inside ``ctx.work_dir``; return its path."""

    def export_all(self, ctx: ExportContext, precisions: Sequence[str]) -> dict[str, Path]:
        """Write one artifact per precision inside ``ctx.work_dir``; return ``{precision: path}``.

        The pipeline calls this once per target. The default calls :meth:`export` once per precision (with
        ``ctx.options.precision``, ``ctx.metadata["precision"]`` set and ``ctx.calibration`` only for int8).
        Override it when one converter run yields every precision (e.g. onnx2tf's single conversion).
        """
        paths = {}
        for precision in precisions:
            sub = dataclasses.replace(
                ctx,
                options=dataclasses.replace(ctx.options, precision=precision),
                metadata={**ctx.metadata, "precision": precision},
                calibration=ctx.calibration if precision == "int8" else None,
            )
            paths[precision] = self.export(sub)
        return paths

    def tool_versions(self) -> dict[str, str]:
        """Versions of the converters and runtimes this target uses (:attr:`distributions`), for the manifest."""
        return {d: package_version(d) for d in self.distributions}
