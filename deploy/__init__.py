"""deploy: export HSNet and its baselines to ONNX, TFLite and CoreML, and prove each artifact's parity.

The pipeline and the verify/inspect helpers are imported on first use (they pull in torch and onnx).
"""

from __future__ import annotations

from typing import Any

from deploy.artifact import Artifact, InputSpec, load_artifact
from deploy.errors import DeployError, MissingDependencyError, ParityError, UnsupportedOperationError

__all__ = [
    "Artifact",
    "DeployError",
    "ExportReport",
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
    "ExportReport": "deploy.pipeline",
    "verify_artifact": "deploy.verify",
    "inspect_artifact": "deploy.verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploy' has no attribute {name!r}")
