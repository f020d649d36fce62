"""``manifest.json``: what an export produced and the evidence that it is right, written atomically and last.

It records the tool versions, the sha256 and size of every file (each file inside an ``.mlpackage`` folder
too), the input spec, labels, per-stage parity figures, ONNX node counts before and after onnxsim, parameters
and MACs counted from the exported graph next to the profiler's, the pre-flight findings and the timings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from hsnet.io import atomic_write_json

__all__ = ["FORMAT", "MANIFEST_NAME", "hash_path", "read_manifest", "write_manifest"]

MANIFEST_NAME = "manifest.json"
FORMAT = "hsnet-deploy-manifest"
FORMAT_VERSION = 1


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_path(path: Path) -> dict[str, Any]:
    """sha256 and size of a file, or of a folder artifact (``.mlpackage``).

    A folder's digest is the sha256 of the sorted lines ``<relative path> <file sha256>``; its files are listed
    with their own digests and sizes so that each one can be checked.

    Returns:
        ``{"sha256": hex, "size": bytes}`` plus ``"files": {relative path: {"sha256", "size"}}`` for a folder.
    """
    path = Path(path)
    if path.is_file():
        return {"sha256": _file_sha256(path), "size": path.stat().st_size}
    if not path.is_dir():
        raise DeployError(f"{path}: no such file or folder")
    files = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        files[f.relative_to(path).as_posix()] = {"sha256": _file_sha256(f), "size": f.stat().st_size}
    listing = "".join(f"{name} {info['sha256']}\n" for name, info in files.items())
    return {
        "sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "size": sum(info["size"] for info in files.values()),
        "files": files,
    }


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
