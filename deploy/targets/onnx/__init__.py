"""The ONNX target: the checked graph itself (fp32), float16 (fp16) and calibrated static int8 (int8), run by
onnxruntime. ``target`` holds the exporter and the artifact; ``int8`` the quantization and its exact rewrite of
grouped convolutions."""

from __future__ import annotations

from deploy.targets.onnx.target import OnnxArtifact, OnnxExporter, session_options

__all__ = ["OnnxArtifact", "OnnxExporter", "session_options"]
