"""Atomic file output: a file is either complete or absent, even after Ctrl-C or ``kill -9``.

Every artifact, checkpoint, manifest, JSON, CSV and PNG the tool writes goes through :func:`atomic_path`
(write to a temporary sibling, then ``os.replace``), so a reader never sees half a file and an existing file is
never damaged by a failed write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hsnet.errors import HSNetError

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable_dir",
    "check_writable_file",
    "ensure_writable_dir",
]


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check that files can be created in it.

    Raises:
        HSNetError: the folder cannot be created or written (one line naming it).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".hsnet-probe-"):
            pass
    except OSError as e:
        raise HSNetError(f"output folder {path} is not writable: {e.strerror or e}") from None
    return path


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe(folder: Path, what: str, target: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hsnet-probe-"):
            pass
    except OSError as e:
        raise HSNetError(f"{what} {target} is not writable: {e.strerror or e}") from None


def check_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, without creating anything, that folder ``path`` can be created (or written, if it exists).

    Raises:
        HSNetError: a file stands where the folder or one of its parents should be, or the nearest existing
            parent cannot be written (one line naming ``path``).
    """
    path = Path(path)
    _check_folder(path, what, path)
    return path


def _check_folder(folder: Path, what: str, target: Path) -> None:
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise HSNetError(f"{what} {target} cannot be created: {base} is a file, not a folder")
    _probe(base, what, target)


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Check, without creating it, that file ``path`` can be written atomically (before long work starts).

    Raises:
        HSNetError: ``path`` is a folder, a parent is a file, or the folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise HSNetError(f"{what} {path} is a folder; give a file path")
    _check_folder(path.parent, what, path)
    return path


PARTIAL_SUFFIX = ".partial"


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (on this machine, in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the temporaries of :func:`atomic_path` in ``folder`` whose writer no longer runs (``kill -9``, power
    loss); a live writer's are left alone. Returns what was removed."""
    removed = []
    for tmp in sorted(Path(folder).glob(f".*{PARTIAL_SUFFIX}")):
        parts = tmp.name[: -len(PARTIAL_SUFFIX)].split(".")
        pid = next((int(p) for p in reversed(parts[:-1]) if p.isdigit()), None)
        if pid is not None and pid_alive(pid):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file or a directory); rename it into place on success.

    On any exception (KeyboardInterrupt included) the temporary is removed and ``path`` is left untouched.
    The temporary name starts with ``.``, holds the writer's pid and ends with ``.partial`` so that it is never
    mistaken for output and :func:`remove_stale_partials` can tell a dead writer's leftover from a live one's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the writer creates a file or a directory of this name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # directory artifacts (.mlpackage) cannot be replaced by os.replace
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (fsync'd before the rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
