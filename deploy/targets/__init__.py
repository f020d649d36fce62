"""Export targets, one module or folder each, registered here once: exporter and artifact loader together.

To add a target: write an :class:`~deploy.targets.base.Exporter` and an :class:`~deploy.artifact.Artifact` in
``deploy/targets/<name>.py`` (or a ``<name>/`` folder when it needs helpers) and add one :class:`Target` line to
:data:`TARGETS`. Everything else (``hsnet deploy export --target``, ``load_artifact``, the benchmark's artifact
builder, the manifest's tool versions) reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.artifact import Artifact
from deploy.errors import DeployError
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from deploy.targets.coreml import CoreMLArtifact, CoreMLExporter
from deploy.targets.onnx import OnnxArtifact, OnnxExporter
from deploy.targets.pt2 import Pt2Artifact, Pt2Exporter
from deploy.targets.tflite import TFLiteArtifact, TFLiteExporter
from hsnet.errors import HSNetError

__all__ = [
    "CORE_DISTRIBUTIONS",
    "EXPORTERS",
    "TARGETS",
    "ExportContext",
    "ExportOptions",
    "Exporter",
    "Finding",
    "Target",
    "artifact_types",
    "distributions",
    "get_exporter",
    "load_artifact",
]


@dataclass(frozen=True)
class Target:
    """One export target: what writes its artifacts and what opens them."""

    exporter: type[Exporter]
    artifact: type[Artifact]

    @property
    def name(self) -> str:
        return self.exporter.name


#: Every target, in the order ``--target all`` converts them (the fp32 ONNX graph is always made first).
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(OnnxExporter, OnnxArtifact),
        Target(TFLiteExporter, TFLiteArtifact),
        Target(CoreMLExporter, CoreMLArtifact),
        Target(Pt2Exporter, Pt2Artifact),
    )
}
#: Targets ``--target all`` includes (the pt2 program is PyTorch's own, asked for by name).
ALL_TARGETS = ("onnx", "tflite", "coreml")
EXPORTERS: dict[str, type[Exporter]] = {name: t.exporter for name, t in TARGETS.items()}
#: Distributions every export uses, whatever its targets (the ONNX stage runs in every export).
CORE_DISTRIBUTIONS = ("torch", "numpy", "onnx", "onnxruntime", "onnxsim")


def get_exporter(name: str) -> Exporter:
    """The exporter for target ``name``; an unknown name lists the valid ones."""
    try:
        return EXPORTERS[name]()
    except KeyError:
        raise DeployError(f"unknown target {name!r}; valid: {', '.join(EXPORTERS)}") from None


def distributions() -> tuple[str, ...]:
    """Every distribution that makes or runs an artifact of any target (versions for manifests and cache keys)."""
    names = [*CORE_DISTRIBUTIONS, *(d for t in TARGETS.values() for d in t.exporter.distributions)]
    return tuple(dict.fromkeys(names))


def artifact_types() -> dict[str, type[Artifact]]:
    """Suffix -> artifact class, for every known artifact format."""
    return {suffix: t.artifact for t in TARGETS.values() for suffix in t.artifact.suffixes}


def load_artifact(path: str | Path, *, threads: int | None = None) -> Artifact:
    """Open a deployed model by its suffix (``.onnx``, ``.tflite``, ``.mlpackage``, ``.pt2``).

    Args:
        path: the artifact file (or ``.mlpackage`` folder).
        threads: intra-op threads for the runtime (``None``: its default).

    Raises:
        DeployError: the path does not exist, its suffix is not a known format (the message lists them), or the
            file cannot be loaded (truncated, corrupt): one line naming the file.
        MissingDependencyError: the runtime of that format is not installed (names the extra).
    """
    path = Path(path)
    if not path.exists():
        raise DeployError(f"{path}: no such file")
    types = artifact_types()
    cls = types.get(path.suffix.lower())
    if cls is None:
        raise DeployError(f"{path}: unknown artifact format {path.suffix!r}; known: {', '.join(sorted(types))}")
    try:
        return cls.load(path, threads=threads)
    except HSNetError:
        raise
    except Exception as e:  # noqa: BLE001 - any runtime's own exception on a bad file becomes one clear line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DeployError(f"{path}: cannot be loaded by {cls.runtime or cls.__name__} ({first})") from None
