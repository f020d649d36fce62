"""``verify`` and ``inspect`` of an existing artifact file, without the export that made it.

:func:`verify_artifact` rebuilds the PyTorch model the artifact claims to hold (from its embedded metadata, or
from the ``manifest.json`` next to it, or from what the caller names) and checks parity on real images.
:func:`inspect_artifact` describes the file: inputs, outputs, metadata, operation counts, size and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.artifact import load_artifact
from deploy.errors import DeployError, ParityError
from deploy.manifest import MANIFEST_NAME, hash_path, read_manifest
from deploy.metadata import ModelMetadata
from deploy.parity import ParityResult, measure_parity, parity_images, raise_if_failed

__all__ = ["VerifyReport", "artifact_metadata", "inspect_artifact", "verify_artifact"]


@dataclass
class VerifyReport:
    """Result of :func:`verify_artifact`: the parity figures and what was compared."""

    path: Path
    model: str
    weights: str
    parity: ParityResult
    divergence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
            "weights": self.weights,
            "parity": self.parity.to_dict(),
            "bisect": self.divergence,
        }


def _manifest_entry(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The manifest next to ``path`` and its record of this file, if there is one."""
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.is_file():
        return None, None
    manifest = read_manifest(manifest_path)
    entry = next((a for a in manifest.get("artifacts", []) if a.get("file") == path.name), None)
    return manifest, entry


def artifact_metadata(path: Path, embedded: dict[str, str]) -> tuple[ModelMetadata, dict[str, Any] | None]:
    """The artifact's :class:`ModelMetadata` (embedded, else from the manifest beside it) and that manifest.

    Raises:
        DeployError: neither the file nor a manifest beside it says which model it holds.
    """
    manifest, entry = _manifest_entry(path)
    try:
        return ModelMetadata.from_strings(embedded, source=str(path)), manifest
    except DeployError:
        if manifest is None or entry is None:
            raise
    from hsnet import __version__

    meta = ModelMetadata(
        model=manifest["model"],
        labels=tuple(manifest["labels"]),
        mean=tuple(manifest["input"]["mean"]),
        std=tuple(manifest["input"]["std"]),
        input_size=int(manifest["input"]["shape"][-1]),
        weights=manifest["weights"],
        hsnet_version=manifest.get("hsnet_version", __version__),
        precision=entry["precision"],
    )
    return meta, manifest


def _checkpoint_for(meta: ModelMetadata, manifest: dict[str, Any] | None, given: Path | None) -> Path | None:
    if given is not None:
        return Path(given)
    sha = meta.checkpoint_sha256
    if sha is None:
        return None
    from deploy.prepare import file_sha256

    recorded = (manifest or {}).get("checkpoint") or {}
    candidate = Path(recorded["path"]) if recorded.get("path") else None
    if candidate is not None and candidate.is_file() and file_sha256(candidate) == sha:
        return candidate
    raise DeployError(
        f"the artifact was exported from a checkpoint (sha256 {sha[:12]}...) that is not at hand; "
        "pass it with --checkpoint"
    )


def verify_artifact(
    path: Path,
    *,
    model: str | None = None,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    images: int = 64,
    threads: int | None = 1,
    bisect: bool = False,
    seed: int = 0,
) -> VerifyReport:
    """Check parity of an artifact file against the PyTorch model it was exported from.

    Args:
        path: the artifact.
        model: registry name (default: the artifact's metadata, else the manifest beside it).
        checkpoint: weights to compare against (default: the artifact's own source: its random seed, or the
            checkpoint recorded in the manifest if that file is still there with the same sha256).
        num_classes: classifier width when ``model`` is given without metadata.
        images: real test images to compare on.
        threads: intra-op threads of PyTorch and of the artifact's runtime (None: their defaults).
        bisect: on failure, name the first diverging layer (ONNX artifacts).
        seed: image selection seed.

    Raises:
        DeployError: unreadable artifact or unknown source model; ParityError: parity fails (with the bisect
            result in the message when asked).
    """
    from deploy.pipeline import torch_threads

    with torch_threads(threads):
        return _verify(path, model, checkpoint, num_classes, images, threads, bisect, seed)


def _verify(path, model, checkpoint, num_classes, images, threads, bisect, seed) -> VerifyReport:  # noqa: ANN001
    path = Path(path)
    artifact = load_artifact(path, threads=threads)
    try:
        meta, manifest = artifact_metadata(path, artifact.metadata())
    except DeployError:
        if model is None:
            raise
        meta, manifest = None, None
    from deploy.prepare import prepare_model

    name = model or meta.model  # type: ignore[union-attr]
    spec_size = artifact.input_spec.shape[-1] if artifact.input_spec.layout == "NCHW" else artifact.input_spec.shape[1]
    size = meta.input_size if meta else spec_size
    ckpt = _checkpoint_for(meta, manifest, checkpoint) if meta else checkpoint
    seed_weights = (meta.seed if meta and meta.seed is not None else 0) if ckpt is None else 0
    classes = num_classes or (meta.num_classes if meta and ckpt is None else None)
    prepared = prepare_model(name, checkpoint=ckpt, num_classes=classes, input_size=size, seed=seed_weights)
    precision = meta.precision if meta else "fp32"
    x, labels, data_classes = parity_images(images, size, mean=prepared.mean, std=prepared.std, seed=seed)
    trained = ckpt is not None and tuple(prepared.labels) == tuple(data_classes)
    result = measure_parity(
        artifact, prepared.reference, x, precision=precision, stage=f"verify {path.name}",
        labels=labels if trained else None,
    )  # fmt: skip
    report = VerifyReport(path=path, model=name, weights=prepared.weights, parity=result)
    if not result.passed and bisect:
        if path.suffix.lower() != ".onnx":
            report.divergence = {"description": f"bisect works on ONNX graphs; {path.suffix} is not one"}
        else:
            from deploy.bisect import bisect_onnx

            found = bisect_onnx(path, prepared.model, x, precision=precision, threads=threads)
            report.divergence = (
                {**found.to_dict(), "description": found.describe()}
                if found
                else {"description": "every layer is within tolerance; only the final logits differ"}
            )
    try:
        raise_if_failed(result)
    except ParityError as e:
        if report.divergence:
            err = ParityError(f"{e}; bisect: {report.divergence['description']}")
            err.result = result  # type: ignore[attr-defined]
            err.report = report  # type: ignore[attr-defined]
            raise err from None
        e.report = report  # type: ignore[attr-defined]
        raise
    return report


def inspect_artifact(path: Path) -> dict[str, Any]:
    """Describe an artifact file: format, runtime, input, outputs, metadata, operation counts, size, sha256.

    When a ``manifest.json`` lies beside it, also whether the file still matches the manifest's sha256.

    Raises:
        DeployError: the file does not exist or cannot be loaded (truncated, corrupt, unknown format).
    """
    path = Path(path)
    info = load_artifact(path).describe()
    digest = hash_path(path)
    info["size"] = digest["size"]
    info["sha256"] = digest["sha256"]
    try:
        _, entry = _manifest_entry(path)
    except DeployError:
        entry = None
    if entry is not None:
        info["manifest_sha256_matches"] = entry.get("sha256") == digest["sha256"]
    return info
