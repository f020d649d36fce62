"""A converted model is a first-class callable: ``load_artifact(path)(x) -> logits`` (:mod:`deploy.targets`).

The calling convention is the same for every runtime, so one parity check serves all of them: ``x`` is what the
PyTorch model takes (float32, NCHW, already normalized with the model's mean/std) and the result is float32
logits of shape ``(batch, num_classes)``. Each artifact adapts internally (NHWC layout, int8 quantization of the
input, CoreML's image input in 0..255 pixels).
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsnet.toolbox.atomic import atomic_path

__all__ = ["Artifact", "InputSpec"]


@dataclass(frozen=True)
class InputSpec:
    """What an artifact's input is, as recorded in the manifest.

    Attributes:
        shape: the artifact's own input shape in its own layout; ``-1`` marks a dynamic batch.
        layout: ``"NCHW"`` or ``"NHWC"``.
        dtype: the artifact's input dtype (``"float32"``, ``"float16"``, ``"int8"``, ``"uint8"``, ``"image"``).
        mean: per-channel mean the caller (or the image input) subtracts, in 0..1 pixel units.
        std: per-channel std the caller (or the image input) divides by.
    """

    shape: tuple[int, ...]
    layout: str
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class Artifact(abc.ABC):
    """A deployed model file that can be called on a batch.

    Subclasses set ``suffixes`` (file or directory suffixes they load, e.g. ``(".onnx",)``) and ``runtime``
    (e.g. ``"onnxruntime"``), and implement :meth:`load`, :meth:`__call__` and :attr:`input_spec`. They may
    override :meth:`metadata`, :meth:`op_counts` and :meth:`describe` (what ``hsnet deploy inspect`` prints).

    Attributes:
        path: the file (or ``.mlpackage`` folder) this artifact was loaded from.
        threads: intra-op threads the runtime was asked to use (``None``: the runtime's default); every figure
            measured with the artifact reports it.
    """

    suffixes: ClassVar[tuple[str, ...]] = ()
    runtime: ClassVar[str] = ""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self._device: tuple[Callable[[np.ndarray], np.ndarray], str] | None = None

    def run_on(self, raw_call: Callable[[np.ndarray], np.ndarray], version: str) -> None:
        """Send every raw call to a device from now on (:mod:`deploy.on_device`): ``raw_call`` runs the
        artifact's own input tensor there; ``version`` says which runtime and device answered."""
        self._device = (raw_call, version)

    def run_here(self) -> None:
        """Raw calls run here again (the end of :meth:`run_on`)."""
        self._device = None

    def raw(self, x: np.ndarray) -> np.ndarray:
        """One call of the runtime on the artifact's own input tensor (its layout, dtype and quantization, which
        :meth:`__call__` applies), here or on the device of :meth:`run_on`; its first output, as stored."""
        if self._device is not None:
            return self._device[0](x)
        return self._raw(x)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        """The local raw call; formats that never run on a device keep this refusal."""
        from deploy.errors import DeployError

        raise DeployError(f"{self.path.name}: {self.runtime} artifacts do not run on a device")

    def _version(self, local: str) -> str:
        """``local`` (the runtime here), or what :meth:`run_on` was told when the calls go to a device."""
        return self._device[1] if self._device is not None else local

    @classmethod
    @abc.abstractmethod
    def load(cls, path: Path, *, threads: int | None = None) -> Artifact:
        """Open ``path`` for inference; a corrupt or truncated file raises :class:`DeployError`."""

    @abc.abstractmethod
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run float32 NCHW normalized input ``x``; return float32 logits ``(batch, num_classes)``."""

    @property
    @abc.abstractmethod
    def input_spec(self) -> InputSpec:
        """The artifact's input as it is stored in the file."""

    @property
    def runtime_version(self) -> str:
        """Version of the runtime that executes this artifact."""
        return "unknown"

    def metadata(self) -> dict[str, str]:
        """Key/value metadata stored inside the artifact (labels, normalization, model name...).

        The keys written by the pipeline are those of :class:`deploy.metadata.ModelMetadata`.
        """
        return {}

    def op_counts(self) -> dict[str, int]:
        """Operation type -> number of nodes in the artifact's graph (empty if the format cannot tell)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What ``hsnet deploy inspect`` shows: format, runtime, input, outputs, metadata, operation counts.

        Subclasses extend the dict (e.g. with ``"outputs"``); keys are JSON-ready.
        """
        ops = self.op_counts()
        return {
            "path": str(self.path),
            "format": self.path.suffix.lower(),
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "input": self.input_spec.to_dict(),
            "outputs": [],
            "metadata": self.metadata(),
            "nodes": sum(ops.values()),
            "ops": dict(sorted(ops.items())),
        }

    def save(self, path: str | Path) -> Path:
        """Copy the artifact (file or folder) to ``path`` atomically; return ``path``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            if self.path.is_dir():
                shutil.copytree(self.path, tmp)
            else:
                shutil.copyfile(self.path, tmp)
        return path
