"""Artifacts to measure: built on the fly by :mod:`deploy` into a cache, or given by path.

Cache layout (``$HSNET_CACHE`` or ``~/.cache/hsnet/artifacts``): one folder per export, named
``<model>-<size>px-b<batch>-<key>-<what>``. ``key`` is a digest of everything that changes the file: model,
classes, input size, batch, weights (checkpoint sha256 or ``random seed=0``), the versions of every tool that
builds or runs artifacts, the parity settings, and a digest of the source of :mod:`hsnet` and :mod:`deploy` (a
change to a model or to the exporter must never be measured from a stale artifact). ``what`` is a target with its
precisions, so a deploy export (which writes ``manifest.json`` beside its artifacts) is one folder. Every folder is
built in a temporary sibling and renamed into place, so an interrupted build leaves nothing behind.

Every artifact is built by deploy's public API (:func:`deploy.export_model`), the torch runtime's too: it measures
deploy's ``pt2`` target, a ``torch.export`` program of the re-parameterised model (the measuring child must not
need :mod:`hsnet`, and ``torch.export.load`` rebuilds a graph of ATen operators without unpickling code;
TorchScript is in maintenance mode and its tracer fails on this stack). It runs the same ATen kernels as eager
PyTorch, without the Python module code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.environment import RUNTIME_DISTRIBUTIONS
from benchmarks.errors import BenchError
from hsnet.errors import HSNetError
from hsnet.toolbox.atomic import atomic_path, remove_stale_partials
from hsnet.toolbox.machine import dist_version, host_arch
from hsnet.toolbox.progress import log

__all__ = [
    "RUNTIME_TARGETS",
    "Built",
    "ModelSpec",
    "build_artifacts",
    "cache_dir",
    "code_digest",
    "describe_artifact",
]

#: Runtime -> deploy target whose artifact it runs.
RUNTIME_TARGETS = {"torch": "pt2", "onnxruntime": "onnx", "tflite": "tflite", "coreml": "coreml"}
#: Real test images per parity check of a benchmark export (part of the cache key: parity figures are gated on).
PARITY_IMAGES = 32


@dataclass(frozen=True)
class ModelSpec:
    """A model as it is exported: the artifact cache is keyed by all of this (plus tools and code).

    ``user`` is the user's own ``nn.Module`` (``model`` is then its name); ``user_key`` identifies it for the
    cache: its spec, the sha256 of its weights and of the source file of its class.
    """

    model: str
    input_size: int
    batch: int = 1
    num_classes: int | None = None
    checkpoint: Path | None = None
    user: Any = field(default=None, compare=False, repr=False)
    user_key: str | None = None
    in_chans: int = 3
    arch: str = field(default_factory=host_arch)  # the CPU family the artifacts are for (deploy's --arch)

    def weights_id(self) -> str:
        """``"checkpoint sha256:<hex>"``, ``"random seed=0"`` or the user's module key (deploy's manifest forms)."""
        if self.user is not None:
            return f"module {self.user_key}"
        if self.checkpoint is None:
            return "random seed=0"
        return f"checkpoint sha256:{_file_sha256(self.checkpoint)}"


@dataclass
class Built:
    """One artifact ready to measure, with what its manifest says about it."""

    path: Path
    size: int
    sha256: str
    parity: dict[str, float] | None = None
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None


def cache_dir() -> Path:
    """``$HSNET_CACHE`` if set, else ``~/.cache/hsnet/artifacts``."""
    env = os.environ.get("HSNET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hsnet" / "artifacts"


@cache
def code_digest() -> str:
    """sha256 of the source files of :mod:`hsnet` and :mod:`deploy` (what defines a model and its export)."""
    import deploy
    import hsnet

    h = hashlib.sha256()
    for pkg in (hsnet, deploy):
        root = Path(pkg.__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root.parent).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def source_digest(module: Any) -> str:
    """sha256 of the source file that defines ``module``'s class ("unknown" when Python cannot tell)."""
    import inspect

    try:
        path = inspect.getsourcefile(type(module))
        return _file_sha256(Path(path)) if path else "unknown"
    except (TypeError, OSError, BenchError):
        return "unknown"


def _file_sha256(path: Path) -> str:
    from hsnet.toolbox.digests import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        raise BenchError(f"{path} cannot be read: {e.strerror or e}") from None


def cache_key(spec: ModelSpec) -> str:
    """Digest of everything that changes an artifact of ``spec`` (see the module docstring)."""
    body = {
        "model": spec.model,
        "num_classes": spec.num_classes,
        "input_size": spec.input_size,
        "batch": spec.batch,
        "weights": spec.weights_id(),
        "in_chans": spec.in_chans,
        "tools": {d: dist_version(d) for d in RUNTIME_DISTRIBUTIONS},
        "parity_images": PARITY_IMAGES,
        "arch": spec.arch,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _entry_prefix(spec: ModelSpec) -> str:
    return f"{spec.model}-{spec.input_size}px-b{spec.batch}-{cache_key(spec)}"


def _find(cache: Path, spec: ModelSpec, target: str, precision: str) -> Built | None:
    """An artifact of ``spec`` for ``target``/``precision`` in any finished cache folder, or None."""
    if not cache.is_dir():
        return None
    for folder in sorted(cache.glob(f"{_entry_prefix(spec)}-*")):
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged entry is rebuilt, never trusted
        for a in data.get("artifacts", []):
            if (a.get("target"), a.get("precision")) == (target, precision) and (folder / a["file"]).exists():
                shape = (data.get("input") or {}).get("shape")
                return Built(
                    folder / a["file"],
                    a["size"],
                    a["sha256"],
                    _parity(a.get("parity")),
                    data.get("weights"),
                    tuple(shape) if shape else None,
                )
    return None


def _parity(p: dict[str, Any] | None) -> dict[str, float] | None:
    if not p:
        return None
    keys = ("max_abs_error", "max_rel_error", "top1_agreement", "accuracy_drop")
    return {k: p[k] for k in keys if p.get(k) is not None}


def build_artifacts(
    spec: ModelSpec, wanted: Sequence[tuple[str, str]], *, cache: Path | None = None
) -> dict[tuple[str, str], Built | HSNetError]:
    """Find or build every (target, precision) in ``wanted`` for ``spec``.

    Deploy targets are built one export per target with all its missing precisions (if that fails, one export per
    precision, so that one failure takes nothing else down); ``pt2`` is the torch program made here. Returns, per
    pair, the artifact or the error that prevented it (a :class:`deploy.errors.MissingDependencyError` names the
    extra to install).
    """
    cache = cache or cache_dir()
    if cache.is_dir():
        for leftover in remove_stale_partials(cache):
            log(f"removed {leftover}, left in the artifact cache by a build that was killed")
    out: dict[tuple[str, str], Built | HSNetError] = {}
    by_target: dict[str, list[str]] = {}
    for target, precision in wanted:
        by_target.setdefault(target, []).append(precision)
    # tflite and coreml exports also produce the fp32 ONNX graph: build them first so the onnx row reuses it.
    order = sorted(by_target, key=lambda t: {"tflite": 0, "coreml": 1, "onnx": 2, "pt2": 3}.get(t, 4))
    for target in order:
        precisions = list(dict.fromkeys(by_target[target]))
        missing = [p for p in precisions if _find(cache, spec, target, p) is None]
        if missing:
            try:
                _build_deploy(cache, spec, target, missing)
            except HSNetError as e:
                if len(missing) == 1:
                    out.update({(target, p): e for p in missing})
                else:  # one precision's failure must not take the others down: build them one by one
                    for p in missing:
                        try:
                            _build_deploy(cache, spec, target, [p])
                        except HSNetError as e1:
                            out[(target, p)] = e1
        for p in precisions:
            if (target, p) not in out:
                found = _find(cache, spec, target, p)
                out[(target, p)] = found if found is not None else BenchError(f"{target} {p} was not produced")
    return out


def _build_deploy(cache: Path, spec: ModelSpec, target: str, precisions: list[str]) -> None:
    from deploy import convert, export_model

    folder = cache / f"{_entry_prefix(spec)}-{target}-{'-'.join(sorted(precisions))}"
    log(f"building {spec.model} {target} {','.join(precisions)} ({spec.input_size}px, batch {spec.batch}) -> {folder}")
    with atomic_path(folder) as tmp:
        options = dict(targets=(target,), precisions=tuple(precisions), batch=spec.batch, out_dir=tmp,
                       parity_images=PARITY_IMAGES, threads=1, arch=spec.arch)  # fmt: skip
        if spec.user is not None:
            import torch

            x = torch.zeros(spec.batch, spec.in_chans, spec.input_size, spec.input_size)
            convert(spec.user, x, name=spec.model, **options)
        else:
            export_model(spec.model, checkpoint=spec.checkpoint, num_classes=spec.num_classes,
                         input_size=spec.input_size, **options)  # fmt: skip


def describe_artifact(path: Path) -> dict[str, Any]:
    """What a user-given artifact is: runtime (by suffix), precision, model, input size and batch.

    The model, precision and input come from ``manifest.json`` beside the file when deploy wrote one; otherwise
    from the file name (``<model>_<precision>.<suffix>``) and the runner reads the input shape from the file.

    The file is opened once here, before any worker starts (:func:`_opened_input`): a truncated, empty or
    foreign file, or ONNX external data outside the model's folder, is an unusable input, not a ``failed`` row.

    Raises:
        BenchError: missing file, unknown suffix (the message lists the known ones), or a file its runtime cannot
            load (the runtime's reason, in one line).
    """
    path = Path(path)
    if not path.exists():
        raise BenchError(f"artifact {path}: no such file")
    suffixes = {".onnx": "onnxruntime", ".tflite": "tflite", ".mlpackage": "coreml", ".pt2": "torch"}
    runtime = suffixes.get(path.suffix.lower())
    if runtime is None:
        raise BenchError(f"artifact {path}: unknown format {path.suffix!r}; known: {', '.join(suffixes)}")
    opened = _opened_input(path) if runtime != "coreml" else None  # CoreML predicts on macOS only
    stem = path.name[: -len(path.suffix)]
    model, _, precision = stem.rpartition("_")
    info: dict[str, Any] = {
        "runtime": runtime,
        "model": model or stem,
        "precision": precision if precision in ("fp32", "fp16", "int8") else "fp32",
        "input_size": None,
        "batch": None,
        "parity": None,
        "weights": None,
        "size": None,
        "sha256": None,
        "macs": None,
        "params": None,
    }
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        shape = (data.get("input") or {}).get("shape")
        info["model"] = data.get("model", info["model"])
        info["weights"] = data.get("weights")
        if shape and len(shape) == 4:
            info["batch"] = shape[0] if shape[0] > 0 else None
            info["input_size"] = shape[-1]
        graph = data.get("graph") or {}
        info["macs"] = graph.get("macs")
        info["params"] = graph.get("params")
        for a in data.get("artifacts", []):
            if a.get("file") == path.name:
                info.update(
                    precision=a.get("precision", info["precision"]),
                    parity=_parity(a.get("parity")),
                    size=a.get("size"),
                    sha256=a.get("sha256"),
                )
    if opened is not None and info["input_size"] is None:
        info["batch"], info["input_size"] = opened
    if info["params"] is None and runtime == "onnxruntime":
        info["params"], info["macs"] = _onnx_counts(path)
    if info["size"] is None and path.is_file():
        info["size"] = path.stat().st_size
        info["sha256"] = _file_sha256(path)
    return info


def _opened_input(path: Path) -> tuple[int | None, int | None] | None:
    """(batch or None, square input side or None) of ``path`` as its runtime opens it; ``None`` when the runtime
    is not installed here (the row then says so).

    Raises:
        BenchError: the runtime cannot load the file.
    """
    from deploy.errors import MissingDependencyError
    from deploy.targets import load_artifact

    try:
        spec = load_artifact(path, threads=1).input_spec
    except MissingDependencyError:
        return None
    except HSNetError as e:
        raise BenchError(f"artifact {e}") from None
    shape = spec.shape
    if len(shape) != 4:
        return None
    side = shape[2] if spec.layout == "NCHW" else shape[1]
    return (shape[0] if shape[0] > 0 else None), (side if side > 0 else None)


def _onnx_counts(path: Path) -> tuple[int | None, int | None]:
    """Parameters and MACs per image counted from an ONNX graph that has no manifest (None where it cannot be)."""
    from deploy.graph_stats import graph_stats

    try:
        stats = graph_stats(path)
    except HSNetError:
        return None, None
    except Exception:  # noqa: BLE001 - a damaged file fails later, when the runtime loads it, with a clear row
        return None, None
    return stats.params, stats.macs_per_image
