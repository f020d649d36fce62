"""``verify`` and ``inspect`` of an existing artifact file, without the export that made it.

:func:`verify_artifact` rebuilds the PyTorch model the artifact claims to hold (from its embedded metadata, or
from the ``manifest.json`` next to it, or from what the caller names) and checks parity on real images.
:func:`inspect_artifact` describes the file: inputs, outputs, metadata, operation counts, size and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError, ParityError
from deploy.images import load_images
from deploy.manifest import MANIFEST_NAME, hash_path, read_manifest
from deploy.metadata import ModelMetadata
from deploy.parity import ParityResult, compare_logits, measure_parity, predict, raise_if_failed
from deploy.targets import load_artifact

__all__ = ["VerifyReport", "artifact_metadata", "inspect_artifact", "verify_artifact"]


@dataclass
class VerifyReport:
    """Result of :func:`verify_artifact`: the parity figures and what was compared."""

    path: Path
    model: str
    weights: str
    parity: ParityResult
    divergence: dict[str, Any] | None = None
    images: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model,
            "weights": self.weights,
            "parity": self.parity.to_dict(),
            "images": self.images,
            "notes": self.notes,
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
    from hsnet.toolbox.digests import file_sha256

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
    module: Any = None,
    reference: np.ndarray | None = None,
    image_source: Path | str | np.ndarray | None = None,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    images: int = 64,
    threads: int | None = 1,
    bisect: bool = False,
    seed: int = 0,
    remote: str | None = None,
    ssh_options: tuple[str, ...] = (),
    ssh_config: str | None = None,
) -> VerifyReport:
    """Check parity of an artifact file against the PyTorch model it was exported from, or a given reference.

    Args:
        path: the artifact.
        model: registry name (default: the artifact's metadata, else the manifest beside it).
        module: the user's own ``nn.Module`` to compare against (for artifacts hsnet did not make).
        reference: reference logits ``(N, classes)`` of ``image_source``'s first N images (with ``image_source``).
        image_source: the images: an image folder or ``.npy`` (:func:`deploy.images.load_images`) [default:
            Fashion-MNIST test images resized to the input, which proves parity, not accuracy in your domain].
        checkpoint: weights to compare against (default: the artifact's own source: its random seed, or the
            checkpoint recorded in the manifest if that file is still there with the same sha256).
        num_classes: classifier width when ``model`` is given without metadata.
        mean, std: normalization of an artifact without metadata [default: 0.5 per channel].
        images: the most images to compare on.
        threads: intra-op threads of PyTorch and of the artifact's runtime (None: their defaults).
        bisect: on failure, name the first diverging layer (ONNX artifacts).
        seed: image selection seed.
        remote: run the artifact on this device (``ssh://...`` or ``qemu:CORE``): the same images, the same
            tolerances, the device's own kernels (:mod:`deploy.on_device`); ``ssh_options`` and ``ssh_config`` for
            its ssh client.

    Raises:
        DeployError: unreadable artifact, unknown source model, reference without images; ParityError: parity
            fails (with the bisect result in the message when asked).
    """
    from deploy.pipeline import torch_threads

    if sum(x is not None for x in (model, module, reference)) > 1:
        raise DeployError("compare against one reference: a model name, your module, or reference logits")
    if reference is not None and image_source is None:
        raise DeployError("--reference logits need the images they were computed on (--images DIR|FILE.npy)")
    if remote is not None and bisect:
        raise DeployError("--bisect runs the graph's prefixes here; it does not combine with --remote")
    device = None if remote is None else (remote, tuple(ssh_options), ssh_config)
    with torch_threads(threads):
        return _verify(path, model, module, reference, image_source, checkpoint, num_classes, mean, std, images,
                       threads, bisect, seed, device)  # fmt: skip


def _spec_geometry(artifact: Any) -> tuple[int, int]:
    """(channels, side) of an artifact's input, NCHW or NHWC."""
    spec = artifact.input_spec
    shape = spec.shape
    return (shape[1], shape[-1]) if spec.layout == "NCHW" else (shape[-1], shape[1])


def _verify(path, model, module, reference, image_source, checkpoint, num_classes, mean, std, images, threads,  # noqa: ANN001
            bisect, seed, device=None) -> VerifyReport:  # fmt: skip
    path = Path(path)
    artifact = load_artifact(path, threads=threads)
    if device is not None:
        from deploy.on_device import on_device

        remote, ssh_options, ssh_config = device
        with on_device(artifact, remote, ssh_options=ssh_options, ssh_config=ssh_config):
            return _verify_loaded(path, artifact, model, module, reference, image_source, checkpoint, num_classes,
                                  mean, std, images, threads, bisect, seed)  # fmt: skip
    return _verify_loaded(path, artifact, model, module, reference, image_source, checkpoint, num_classes, mean,
                          std, images, threads, bisect, seed)  # fmt: skip


def _verify_loaded(path, artifact, model, module, reference, image_source, checkpoint, num_classes, mean, std,  # noqa: ANN001
                   images, threads, bisect, seed) -> VerifyReport:  # fmt: skip
    try:
        meta, manifest = artifact_metadata(path, artifact.metadata())
    except DeployError:
        if model is None and module is None and reference is None:
            raise DeployError(
                f"{path} carries no hsnet metadata and has no manifest beside it: name what to compare against "
                "(--model NAME or module:callable, or --reference logits.npy with --images)"
            ) from None
        meta, manifest = None, None
    notes: list[str] = []
    if model is not None and meta is not None and ":" not in model and model != meta.model:
        notes.append(f"the artifact's metadata names model {meta.model!r}; comparing against {model!r} as asked")
    chans, spec_size = _spec_geometry(artifact)
    size = meta.input_size if meta else spec_size
    precision = meta.precision if meta else "fp32"
    if module is not None or reference is not None:
        return _verify_given(path, artifact, meta, module, reference, image_source, chans, size, precision, mean,
                             std, images, seed, notes)  # fmt: skip
    from deploy.prepare import prepare_model

    name = model or meta.model  # type: ignore[union-attr]
    ckpt = _checkpoint_for(meta, manifest, checkpoint) if meta else checkpoint
    seed_weights = (meta.seed if meta and meta.seed is not None else 0) if ckpt is None else 0
    classes = num_classes or (meta.num_classes if meta and ckpt is None else None)
    prepared = prepare_model(name, checkpoint=ckpt, num_classes=classes, input_size=size, seed=seed_weights)
    got = load_images(image_source, count=images, input_size=size, mean=prepared.mean, std=prepared.std, seed=seed)
    x, labels = got.x, got.labels
    trained = ckpt is not None and tuple(prepared.labels) == tuple(got.classes or ())
    result = measure_parity(
        artifact, prepared.reference, x, precision=precision, stage=f"verify {path.name}",
        labels=labels if trained else None, source=got.source,
    )  # fmt: skip
    report = VerifyReport(path=path, model=name, weights=prepared.weights, parity=result, images=got.description,
                          notes=notes)  # fmt: skip
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
    return _raise_or_return(report)


def _verify_given(path, artifact, meta, module, reference, image_source, chans, size, precision, mean, std,  # noqa: ANN001
                  images, seed, notes) -> VerifyReport:  # fmt: skip
    """Parity against the user's own module or against reference logits computed elsewhere."""
    mean = tuple(mean) if mean is not None else (meta.mean if meta else (0.5,) * chans)
    std = tuple(std) if std is not None else (meta.std if meta else (0.5,) * chans)
    if module is not None:
        import torch

        from deploy.prepare import prepare_module

        prepared = prepare_module(module, torch.zeros(1, chans, size, size), name=meta.model if meta else path.stem,
                                  mean=mean, std=std)  # fmt: skip
        got = load_images(image_source, count=images, input_size=size, mean=mean, std=std, seed=seed)
        result = measure_parity(artifact, prepared.reference, got.x, precision=precision, stage=f"verify {path.name}",
                                source=got.source)  # fmt: skip
        report = VerifyReport(path=path, model=prepared.name, weights=prepared.weights, parity=result,
                              images=got.description, notes=notes)  # fmt: skip
        return _raise_or_return(report)
    ref = np.asarray(reference)
    if ref.ndim != 2 or not np.issubdtype(ref.dtype, np.floating):
        raise DeployError(f"reference logits must be a float (images, classes) array; got {ref.dtype} {ref.shape}")
    if not np.isfinite(ref).all():
        raise DeployError("reference logits contain NaN or infinite values")
    got = load_images(image_source, count=len(ref), input_size=size, mean=mean, std=std, seed=seed)
    if len(got.x) != len(ref):
        raise DeployError(f"{len(ref)} reference rows but {len(got.x)} images in {got.description}; give one row "
                          "of logits per image, in order")  # fmt: skip
    out = predict(artifact, got.x)
    result = compare_logits(
        ref.astype(np.float32), out, precision=precision, stage=f"verify {path.name}", runtime=artifact.runtime,
        runtime_version=artifact.runtime_version, threads=artifact.threads,
        batch=artifact.input_spec.shape[0] if artifact.input_spec.shape[0] > 0 else 16, source=got.source,
    )  # fmt: skip
    report = VerifyReport(path=path, model=meta.model if meta else path.stem, weights="reference logits",
                          parity=result, images=got.description, notes=notes)  # fmt: skip
    return _raise_or_return(report)


def _raise_or_return(report: VerifyReport) -> VerifyReport:
    try:
        raise_if_failed(report.parity)
    except ParityError as e:
        if report.divergence:
            err = ParityError(f"{e}; bisect: {report.divergence['description']}")
            err.result = report.parity  # type: ignore[attr-defined]
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
