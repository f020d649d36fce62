"""``manifest.json``: what an export produced and the evidence that it is right, written atomically and last.

It records the tool versions, the sha256 and size of every file (each file inside an ``.mlpackage`` folder
too), the input spec, labels, per-stage parity figures, ONNX node counts before and after onnxsim, parameters
and MACs counted from the exported graph next to the profiler's, the pre-flight findings and the timings.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from hsnet.toolbox import digests
from hsnet.toolbox.atomic import atomic_write_json

__all__ = ["FORMAT", "MANIFEST_NAME", "hash_path", "manifest_body", "read_manifest", "write_manifest"]

MANIFEST_NAME = "manifest.json"
FORMAT = "hsnet-deploy-manifest"
FORMAT_VERSION = 1


def hash_path(path: Path) -> dict[str, Any]:
    """sha256 and size of an artifact file or folder (see :func:`hsnet.toolbox.digests.hash_path`).

    Raises:
        DeployError: ``path`` is neither a file nor a folder.
    """
    try:
        return digests.hash_path(path)
    except FileNotFoundError as e:
        raise DeployError(str(e)) from None


def manifest_body(
    *,
    status: str,
    error: str | None,
    prepared: Any,
    request: Any,
    plan: list,
    options_of: dict,
    calibration: str | None,
    images: str,
    simplify: Any,
    graph: dict[str, Any],
    parity: list,
    divergence: dict[str, Any] | None,
    artifacts: list,
    findings: list,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The manifest of one export (:mod:`deploy.pipeline`): status, provenance, tools, machine, input and output,
    options, rewrites, ONNX node counts, graph figures, every parity check, artifacts with their file digests,
    findings and timings."""
    from deploy.metadata import INPUT_NAME, OUTPUT_NAME
    from deploy.targets import CORE_DISTRIBUTIONS
    from hsnet.toolbox.machine import host_arch, machine, versions

    p = prepared
    batch = request.batch
    tools = versions(CORE_DISTRIBUTIONS)
    for exporter, _ in plan:
        tools.update(exporter.tool_versions())
    files = {}
    for record in artifacts:
        files[record.path.name] = {"sha256": record.sha256, "size": record.size}
        for name, info in record.files.items():
            files[f"{record.path.name}/{name}"] = info
    return {
        "status": status,
        "error": error,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": p.name,
        "weights": p.weights,
        "checkpoint": None if p.checkpoint is None else {"path": str(p.checkpoint.resolve()),
                                                         "sha256": p.metadata().checkpoint_sha256},
        "source_onnx": None if p.onnx is None else {"path": str(p.onnx.path.resolve()), "opset": p.onnx.opset,
                                                     "sha256": p.weights.split(":", 1)[1]},
        "hsnet_version": p.metadata().hsnet_version,
        "tools": tools,
        "machine": machine(),
        "input": {
            "name": INPUT_NAME,
            "shape": [batch if batch else -1, p.in_chans, p.input_size, p.input_size],
            "layout": "NCHW",
            "dtype": "float32",
            "mean": list(p.mean),
            "std": list(p.std),
            "normalization": "(pixel / 255 - mean) / std, per channel",
        },
        "output": {"name": OUTPUT_NAME, "shape": [batch if batch else -1, p.num_classes]},
        "labels": list(p.labels),
        "options": {
            "targets": list(dict.fromkeys(e.name for e, _ in plan)),
            "precisions": list(dict.fromkeys(pr for _, pr in plan)),
            "batch": batch,
            "opset": request.opset if p.onnx is None else p.onnx.opset,
            "converters": {f"{k[0]}/{k[1]}": o.converter for k, o in options_of.items()},
            "calibration": calibration,
            "parity_images": request.parity_images,
            "images": images,
            "seed": request.seed,
            "threads": request.threads,
            "tune": request.tune,
            "tune_on": request.tune_site.remote if request.tune else None,
            "arch": next((o.arch for o in options_of.values()), request.arch or host_arch()),
        },
        "rewrites": [r.to_dict() for r in p.rewrites],
        "onnx": None if simplify is None else {
            "nodes_before_simplification": simplify.nodes_before,
            "nodes_after_simplification": simplify.nodes_after,
            "onnxsim_ok": simplify.ok,
            "onnxsim": simplify.to_dict(),
        },
        "graph": graph,
        "parity": [r.to_dict() for r in parity],
        "bisect": divergence,
        "artifacts": [a.to_dict() for a in artifacts],
        "files": files,
        "findings": [f.to_dict() for f in findings],
        "timings": timings,
    }  # fmt: skip


def write_manifest(out_dir: Path, body: dict[str, Any]) -> Path:
    """Write ``body`` (format marker first) as ``out_dir/manifest.json`` atomically; return its path."""
    return atomic_write_json(
        Path(out_dir) / MANIFEST_NAME, {"format": FORMAT, "format_version": FORMAT_VERSION, **body}
    )


def read_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest (``path`` is the file or the folder holding it).

    Raises:
        DeployError: missing, not JSON, or not an hsnet deploy manifest.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeployError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DeployError(f"{path}: not an hsnet deploy manifest")
    return data
