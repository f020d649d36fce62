"""Convert registered models to CoreML and check the evaluator against PyTorch: ``hsnet deploy coreml-survey``.

For every model (``--models``, a shell pattern) and precision this converts the prepared model with
:class:`deploy.targets.coreml.CoreMLExporter`, lists the MIL operations of the program, runs it with the
numpy evaluator on real Fashion-MNIST images and compares with the PyTorch reference (:mod:`deploy.parity`).
It prints a table (or JSON) and the union of operations, and exits 1 if any model fails: the tool behind the
operation-coverage list in docs/deploy.md. It takes minutes (19 models x 2 precisions at 32x32 on 2 cores), so
the test suite runs it on four models only.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SurveyRow", "survey"]


@dataclass
class SurveyRow:
    """One model at one precision.

    Attributes:
        model: registry name.
        precision: ``fp32`` or ``fp16``.
        ops: MIL operation type -> count (``const`` included).
        convert_s: conversion time (torch.export + coremltools), seconds.
        eval_ms: evaluator time per image, milliseconds (numpy, one BLAS thread).
        parity: :meth:`deploy.parity.ParityResult.to_dict` of the comparison, or ``None`` if conversion failed.
        error: the error that stopped this row, if any.
    """

    model: str
    precision: str
    ops: dict[str, int]
    convert_s: float
    eval_ms: float
    parity: dict[str, Any] | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.parity is not None and self.parity["passed"]


def survey(
    models: list[str], *, input_size: int = 32, precisions: tuple[str, ...] = ("fp32", "fp16"), images: int = 8
) -> list[SurveyRow]:
    """Convert, evaluate and compare every model in ``models`` at every precision (seeded random weights)."""
    from deploy.errors import DeployError
    from deploy.images import parity_images
    from deploy.parity import measure_parity
    from deploy.prepare import prepare_model
    from deploy.targets import load_artifact
    from deploy.targets.base import ExportContext, ExportOptions
    from deploy.targets.coreml.target import CoreMLExporter
    from hsnet.toolbox.progress import progress

    rows: list[SurveyRow] = []
    with tempfile.TemporaryDirectory(prefix="hsnet-mil-survey-") as tmp:
        for name in progress(models, desc="CoreML survey"):
            prepared = prepare_model(name, input_size=input_size, num_classes=10)
            x, _, _ = parity_images(images, input_size, mean=prepared.mean, std=prepared.std)
            exporter = CoreMLExporter()
            for precision in precisions:
                ctx = ExportContext(
                    model_name=name,
                    model=prepared.model,
                    onnx_path=Path(tmp) / "unused.onnx",
                    labels=list(prepared.labels),
                    mean=prepared.mean,
                    std=prepared.std,
                    options=ExportOptions(precision=precision, batch=1, input_size=input_size),
                    work_dir=Path(tmp),
                    metadata=prepared.metadata(precision).to_strings(),
                )
                start = time.perf_counter()
                try:
                    path = exporter.export(ctx)
                    convert_s = time.perf_counter() - start
                    artifact = load_artifact(path, threads=1)
                    start = time.perf_counter()
                    result = measure_parity(
                        artifact, prepared.reference, x, precision=precision, stage=f"coreml/{precision}"
                    )
                    eval_ms = 1000 * (time.perf_counter() - start) / len(x)
                    rows.append(SurveyRow(name, precision, artifact.op_counts(), convert_s, eval_ms, result.to_dict()))
                except DeployError as e:
                    rows.append(SurveyRow(name, precision, {}, time.perf_counter() - start, 0.0, None, str(e)))
    return rows
