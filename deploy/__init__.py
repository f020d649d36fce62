"""deploy: export HSNet and its baselines to ONNX, TFLite and CoreML, and prove each artifact's parity."""

from deploy.artifact import Artifact, InputSpec, load_artifact
from deploy.errors import DeployError, MissingDependencyError, ParityError, UnsupportedOperationError

__all__ = [
    "Artifact",
    "DeployError",
    "InputSpec",
    "MissingDependencyError",
    "ParityError",
    "UnsupportedOperationError",
    "load_artifact",
]
