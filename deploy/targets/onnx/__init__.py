"""The ONNX target: the checked graph itself (fp32), float16 (fp16) and calibrated static int8 (int8), run by
onnxruntime. ``target`` holds the exporter and the artifact; ``int8`` the quantization and its exact rewrite of
grouped convolutions; ``groups`` that rewrite; ``tune`` the ``--tune`` measurements; ``session`` the session
options."""

from __future__ import annotations

from deploy.targets.onnx.session import session_options
from deploy.targets.onnx.target import OnnxArtifact, OnnxExporter

__all__ = ["OnnxArtifact", "OnnxExporter", "session_options"]
