"""The key/value metadata every artifact carries, so that it can be verified without its manifest.

ONNX stores it as ``metadata_props``; other formats store the same keys their own way (TFLite metadata,
CoreML ``user_defined_metadata``). Every value is a string; lists are JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from deploy.errors import DeployError

__all__ = ["ModelMetadata", "OUTPUT_NAME", "INPUT_NAME"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ModelMetadata:
    """What an artifact says about the model inside it.

    Attributes:
        model: registry name.
        labels: class names, one per logit.
        mean: per-channel normalization mean (0..1 pixel units) the caller applies before the artifact.
        std: per-channel normalization std.
        input_size: square input side.
        weights: where the weights came from: ``"checkpoint sha256:<hex>"`` or ``"random seed=<n>"``.
        hsnet_version: version of hsnet that exported it.
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_layout: layout of the artifact's own input (``NCHW``; ``NHWC`` for TFLite).
        rewrites: export rewrites applied before conversion.
    """

    model: str
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    weights: str
    hsnet_version: str
    precision: str = "fp32"
    input_layout: str = "NCHW"
    rewrites: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def seed(self) -> int | None:
        """The seed of randomly initialised weights, or None for weights from a checkpoint."""
        if self.weights.startswith("random seed="):
            return int(self.weights.split("=", 1)[1])
        return None

    @property
    def checkpoint_sha256(self) -> str | None:
        """The sha256 of the checkpoint the weights came from, or None for random weights."""
        prefix = "checkpoint sha256:"
        return self.weights[len(prefix) :] if self.weights.startswith(prefix) else None

    def to_strings(self) -> dict[str, str]:
        """The string key/values stored inside an artifact."""
        return {
            "model": self.model,
            "labels": json.dumps(list(self.labels)),
            "num_classes": str(self.num_classes),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "input_size": str(self.input_size),
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "input_layout": self.input_layout,
            "weights": self.weights,
            "precision": self.precision,
            "hsnet_version": self.hsnet_version,
            "rewrites": json.dumps(list(self.rewrites)),
        }

    def replace(self, **changes: object) -> ModelMetadata:
        """A copy with ``changes`` applied (e.g. another precision or layout)."""
        import dataclasses

        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_strings(cls, values: dict[str, str], *, source: str = "artifact") -> ModelMetadata:
        """Parse what :meth:`to_strings` wrote.

        Raises:
            DeployError: a key is missing or malformed (the artifact was not exported by hsnet, or was edited).
        """
        required = ("model", "labels", "mean", "std", "input_size", "weights", "hsnet_version")
        missing = [k for k in required if k not in values]
        if missing:
            raise DeployError(
                f"{source} carries no hsnet metadata ({', '.join(missing)} missing); "
                "name the model with --model (and --checkpoint)"
            )
        try:
            labels = tuple(str(v) for v in json.loads(values["labels"]))
            mean = tuple(float(v) for v in json.loads(values["mean"]))
            std = tuple(float(v) for v in json.loads(values["std"]))
            rewrites = tuple(str(v) for v in json.loads(values.get("rewrites", "[]")))
            input_size = int(values["input_size"])
        except (ValueError, TypeError) as e:
            raise DeployError(f"{source} has malformed hsnet metadata ({e})") from None
        return cls(
            model=values["model"],
            labels=labels,
            mean=mean,
            std=std,
            input_size=input_size,
            weights=values["weights"],
            hsnet_version=values["hsnet_version"],
            precision=values.get("precision", "fp32"),
            input_layout=values.get("input_layout", "NCHW"),
            rewrites=rewrites,
        )
