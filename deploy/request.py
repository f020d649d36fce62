"""What an export is asked to produce and what it produced: :class:`ExportRequest` (every option, validated by
:meth:`ExportRequest.plan` without creating anything), :func:`plan_targets` (the work, in order, with what was
skipped and why), and the results, :class:`ArtifactRecord` and :class:`ExportReport`. The work itself is
:mod:`deploy.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError
from deploy.images import check_source
from deploy.parity import ParityResult
from deploy.targets.base import PRECISIONS, Exporter, ExportOptions, Finding
from deploy.tuning import TuneSite
from hsnet.toolbox.atomic import check_writable_dir
from hsnet.toolbox.machine import ARCHES

__all__ = ["ArtifactRecord", "ExportReport", "ExportRequest", "plan_targets", "request_from"]


@dataclass(frozen=True)
class ExportRequest:
    """What to produce and how to check it: every option of an export, validated by :meth:`plan`.

    Attributes:
        targets: ``onnx``, ``tflite``, ``coreml``, ``pt2`` or ``all`` (onnx, tflite, coreml); the fp32 ONNX graph
            is always produced.
        precisions: ``fp32``, ``fp16``, ``int8`` (each named target must support each one; ``all`` skips what a
            target lacks and says so in the findings).
        out_dir: output folder (created when the work starts; its nearest existing parent must be writable).
        batch: fixed batch, or ``None`` for a dynamic batch dimension.
        opset: ONNX opset, 17..20.
        converter: converter of the targets that offer several (e.g. TFLite's ``onnx2tf``/``litert-torch``).
        images: parity images: ``None``/``"fashion-mnist"`` (Fashion-MNIST resized to the input, which proves
            parity but says nothing about accuracy in another domain), an image folder or a ``.npy``
            (:func:`deploy.images.load_images`).
        calibration: int8 calibration data, same kinds [default: ``images``' training split]; only with int8.
        parity_images: the most images per parity check.
        bisect: on a parity failure, find and name the first diverging layer.
        seed: seed of random weights and of the image selection.
        threads: intra-op threads of PyTorch and of the runtimes during the export and its parity checks
            (``None``: their defaults). One by default: on a shared or small machine extra threads wait on each
            other more than they compute.
        tune: measure each layer's exact variants on the target runtime here and keep the fastest (the ONNX
            target's fp32 artifact: :mod:`deploy.targets.onnx.tune`); recorded in the manifest.
        tune_site: where ``tune`` measures (:class:`deploy.tuning.TuneSite`: here, or a ``--remote`` device).
        arch: the CPU family the artifacts are for, ``x86_64`` or ``aarch64`` (``None``: this machine's, or the
            ``tune_site`` device's); decides
            the layer variants measured to win there (:attr:`deploy.targets.base.ExportOptions.arch`).
    """

    targets: Sequence[str] = ("onnx",)
    precisions: Sequence[str] = ("fp32",)
    out_dir: Path = Path("exports")
    batch: int | None = 1
    opset: int = 17
    converter: str | None = None
    images: Path | str | np.ndarray | None = None
    calibration: Path | str | np.ndarray | None = None
    parity_images: int = 64
    bisect: bool = False
    seed: int = 0
    threads: int | None = 1
    tune: bool = False
    tune_site: TuneSite = field(default_factory=TuneSite)
    arch: str | None = None

    def plan(self) -> tuple[list[tuple[Exporter, str]], list[Finding]]:
        """Check every option (nothing is created or converted); return the work plan and the skip findings.

        Raises:
            HSNetError: the first invalid option, in one line naming what is valid.
            MissingDependencyError: a selected target's optional dependency is missing (names the extra).
        """
        from deploy.onnx_export import check_opset

        check_opset(self.opset)
        batch = self.batch
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise DeployError(f"batch must be a positive integer or None (dynamic), got {batch!r}")
        plan, findings = plan_targets(self.targets, self.precisions, self.converter, batch)
        n = self.parity_images
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DeployError(f"parity_images must be a positive integer, got {n!r}")
        wants_int8 = any(p == "int8" for _, p in plan)
        if self.calibration is not None and not wants_int8:
            raise DeployError("calibration data is only used for int8; no int8 artifact was requested")
        if self.tune_site.remote is not None:
            if not self.tune:
                raise DeployError("--remote measures --tune's variants on a device: give --tune (deploy verify "
                                  "--remote checks parity there)")  # fmt: skip
            self.tune_site.device()  # a malformed device is a usage error before any work
        if self.arch is not None and self.arch not in ARCHES:
            raise DeployError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCHES)}")
        check_source(self.images, "parity images")
        check_source(self.calibration, "calibration data")
        check_writable_dir(self.out_dir)
        for exporter, precision in plan:
            conv = self.converter if self.converter in exporter.converters else None
            exporter.check_available(ExportOptions(precision=precision, batch=batch, opset=self.opset, converter=conv))
        return plan, findings


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
    tuning: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            "precision": self.precision,
            "file": self.path.name,
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "input": self.input,
            "parity": self.parity.to_dict(),
        }
        if self.tuning is not None:
            out["tuning"] = self.tuning  # --tune: each layer's variants, choice and gain (deploy.targets.onnx.tune)
        return out


@dataclass
class ExportReport:
    """What :func:`convert` / :func:`export_model` produced.

    Attributes:
        model: registry name, or the name given to the user's module.
        out_dir: the output folder.
        artifacts: every artifact written, in order (the fp32 ONNX graph first).
        manifest: path of ``manifest.json``.
        findings: pre-flight findings of every target (and skipped combinations).
        timings: seconds per stage.
        parity: every parity check, stage by stage (``prepare``, ``onnx``, then one per artifact).
        simplify: the onnxsim record (``ok`` False when it failed and the unsimplified graph was used).
        graph: parameters/MACs from the exported graph and the profiler's, with the cross-check.
        images: what the parity images were (one line).
        reference: what every parity check compared against (one line).
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
    images: str = ""
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "out_dir": str(self.out_dir),
            "manifest": str(self.manifest),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "findings": [f.to_dict() for f in self.findings],
            "timings": self.timings,
            "parity": [p.to_dict() for p in self.parity],
            "parity_images": self.images,
            "parity_reference": self.reference,
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
    from deploy.targets import ALL_TARGETS, EXPORTERS

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
            names += list(ALL_TARGETS)
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


def request_from(options: dict[str, Any]) -> ExportRequest:
    valid = [f.name for f in dataclasses.fields(ExportRequest)]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise DeployError(f"unknown export option {unknown[0]!r}; valid: {', '.join(valid)}")
    if "out_dir" in options:
        options["out_dir"] = Path(options["out_dir"])
    return ExportRequest(**options)
