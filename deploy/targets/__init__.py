"""Export targets, one module each; importing this package registers their exporters and artifact types."""

from __future__ import annotations

from deploy.errors import DeployError
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from deploy.targets.coreml import CoreMLExporter
from deploy.targets.onnx import OnnxExporter
from deploy.targets.tflite import TFLiteExporter

__all__ = ["EXPORTERS", "ExportContext", "ExportOptions", "Exporter", "Finding", "get_exporter"]

EXPORTERS: dict[str, type[Exporter]] = {cls.name: cls for cls in (OnnxExporter, TFLiteExporter, CoreMLExporter)}


def get_exporter(name: str) -> Exporter:
    """The exporter for target ``name``; an unknown name lists the valid ones."""
    try:
        return EXPORTERS[name]()
    except KeyError:
        raise DeployError(f"unknown target {name!r}; valid: {', '.join(EXPORTERS)}") from None
