"""deploy: export any PyTorch image classifier (HSNet, its baselines, your own network) to ONNX, TFLite, CoreML and
a torch.export program, and prove each artifact's parity.

``deploy.convert(module, example_input, targets=..., precisions=..., images=..., out_dir=...)`` takes any
``nn.Module``; ``deploy.export_model(name, ...)`` takes a registered model; ``deploy.convert_onnx_file(path, ...)``
starts from an ONNX file (ONNX and TFLite targets).

The pipeline and the verify/inspect helpers are imported on first use (they pull in torch and onnx).
"""

from __future__ import annotations

from typing import Any

from deploy.artifact import Artifact, InputSpec
from deploy.errors import DeployError, MissingDependencyError, ParityError, UnsupportedOperationError

__all__ = [
    "Artifact",
    "DeployError",
    "ExportReport",
    "ExportRequest",
    "convert",
    "convert_onnx_file",
    "InputSpec",
    "MissingDependencyError",
    "ParityError",
    "UnsupportedOperationError",
    "export_model",
    "inspect_artifact",
    "load_artifact",
    "verify_artifact",
]

_LAZY = {
    "export_model": "deploy.pipeline",
    "ExportReport": "deploy.request",
    "ExportRequest": "deploy.request",
    "convert": "deploy.pipeline",
    "convert_onnx_file": "deploy.pipeline",
    "verify_artifact": "deploy.verify",
    "inspect_artifact": "deploy.verify",
    "load_artifact": "deploy.targets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploy' has no attribute {name!r}")
