"""pt2 target: a ``torch.export`` program (``.pt2``) of the re-parameterised model, run by PyTorch itself.

This is what ``hsnet bench`` measures as the ``torch`` runtime: the same ATen kernels as eager PyTorch without the
Python module code, loadable by a process that does not have :mod:`hsnet` (``torch.export.load`` rebuilds a graph
of ATen operators and does not unpickle code). The program is made from the model as hsnet defines it, fused
(BatchNorm folded, branches merged), not from the graph rewritten for converters: the rewrites serve ONNX,
TFLite and CoreML, not PyTorch. The model's metadata travels inside the file (``extra_files``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deploy.artifact import Artifact, InputSpec
from deploy.errors import DeployError
from deploy.metadata import ModelMetadata
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from hsnet.toolbox.machine import package_version

__all__ = ["METADATA_FILE", "Pt2Artifact", "Pt2Exporter"]

#: Name of the metadata entry inside the ``.pt2`` archive.
METADATA_FILE = "hsnet_metadata.json"


class Pt2Exporter(Exporter):
    """Writes ``torch.export.export(fused model, example input)`` with ``torch.export.save``."""

    name = "pt2"
    suffix = ".pt2"
    extra = "onnx"  # torch is a core dependency; nothing optional is needed
    precisions = ("fp32",)
    converters = ("torch.export",)
    module_converters = frozenset({"torch.export"})
    supports_dynamic_batch = False
    distributions = ("torch",)

    def check_available(self, options: ExportOptions) -> None:
        """torch is always installed with hsnet."""

    def preflight(self, ctx: ExportContext) -> list[Finding]:
        """Nothing to report: PyTorch runs every operation of its own model."""
        return []

    def export(self, ctx: ExportContext) -> Path:
        import torch

        model = ctx.fused_model if ctx.fused_model is not None else ctx.model
        x = torch.zeros(ctx.input_shape)
        try:
            with torch.no_grad():
                program = torch.export.export(model.eval(), (x,))
        except Exception as e:  # noqa: BLE001 - torch.export raises many types for untraceable code
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"torch.export cannot trace {ctx.model_name} ({type(e).__name__}: {first})") from None
        out = ctx.work_dir / self.artifact_name(ctx)
        torch.export.save(program, out, extra_files={METADATA_FILE: json.dumps(ctx.metadata, sort_keys=True)})
        return out


class Pt2Artifact(Artifact):
    """A ``.pt2`` program run by PyTorch on the CPU (float32 NCHW normalized input, float32 logits)."""

    suffixes: ClassVar[tuple[str, ...]] = (".pt2",)
    runtime: ClassVar[str] = "torch"

    def __init__(self, path: Path, program: Any, meta: dict[str, str], *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self.program = program
        self.module = program.module()
        self._meta = meta

    @classmethod
    def load(cls, path: Path, *, threads: int | None = None) -> Pt2Artifact:
        import torch

        extra = {METADATA_FILE: ""}
        try:
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as e:  # noqa: BLE001 - a damaged archive raises zipfile/runtime errors of many kinds
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"{path}: not a loadable torch.export program ({first})") from None
        try:
            meta = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
        except json.JSONDecodeError:
            meta = {}
        return cls(Path(path), program, meta if isinstance(meta, dict) else {}, threads=threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x)
        shape = self.input_spec.shape
        if x.dtype != np.float32 or tuple(x.shape) != tuple(shape):
            raise DeployError(f"{self.path.name} takes float32 {tuple(shape)} (NCHW, normalized); got {x.dtype} "
                              f"{tuple(x.shape)}")  # fmt: skip
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return self.module(torch.from_numpy(np.array(x))).numpy().astype(np.float32)
        finally:
            torch.set_num_threads(before)

    @property
    def input_spec(self) -> InputSpec:
        placeholder = next(s for s in self.program.graph_signature.input_specs if s.kind.name == "USER_INPUT")
        node = next(n for n in self.program.graph.nodes if n.name == placeholder.arg.name)
        shape = tuple(int(d) for d in node.meta["val"].shape)
        try:
            m = ModelMetadata.from_strings(self._meta)
            mean, std = m.mean, m.std
        except DeployError:
            mean = std = ()
        return InputSpec(shape=shape, layout="NCHW", dtype="float32", mean=mean, std=std)

    @property
    def runtime_version(self) -> str:
        return package_version("torch")

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.program.graph.nodes:
            if n.op == "call_function":
                name = getattr(n.target, "__name__", str(n.target))
                counts[name] = counts.get(name, 0) + 1
        return counts
