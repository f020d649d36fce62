"""sha256 (and md5) of files and of folder artifacts such as ``.mlpackage``: the one copy every layer uses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["file_digests", "file_sha256", "hash_path"]

_BLOCK = 1 << 20


def file_digests(path: str | Path, algorithms: Iterable[str] = ("md5", "sha256")) -> dict[str, str]:
    """Hex digests of a file's bytes, read once in 1 MiB blocks."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digests(path, ("sha256",))["sha256"]


def hash_path(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a file, or of a folder artifact (``.mlpackage``).

    A folder's digest is the sha256 of the sorted lines ``<relative path> <file sha256>``; its files are listed
    with their own digests and sizes so that each one can be checked.

    Returns:
        ``{"sha256": hex, "size": bytes}`` plus ``"files": {relative path: {"sha256", "size"}}`` for a folder.

    Raises:
        FileNotFoundError: ``path`` is neither a file nor a folder.
    """
    path = Path(path)
    if path.is_file():
        return {"sha256": file_sha256(path), "size": path.stat().st_size}
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        files[f.relative_to(path).as_posix()] = {"sha256": file_sha256(f), "size": f.stat().st_size}
    listing = "".join(f"{name} {info['sha256']}\n" for name, info in files.items())
    return {
        "sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "size": sum(info["size"] for info in files.values()),
        "files": files,
    }
