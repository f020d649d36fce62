"""The user's own network on the command line: ``--model my_pkg.nets:build`` or ``--model path/to/file.py:build``.

A spec names a callable that returns a ``torch.nn.Module`` (a class is a callable too). It is imported like any
Python code the user runs: a spec is code the user chose to run, exactly as ``python -c 'import my_pkg'`` would
be. Registry names (``hsnet models``) are never specs: a spec has a ``:``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import DeployError

__all__ = ["UserModelSpec", "is_spec", "load_user_model", "parse_input_shape"]

_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_spec(text: str) -> bool:
    """True for ``module:callable`` / ``file.py:callable``; False for a registry name."""
    return ":" in text


@dataclass(frozen=True)
class UserModelSpec:
    """A parsed ``module:callable`` or ``file.py:callable``."""

    source: str
    attr: str

    @property
    def name(self) -> str:
        """A file-safe name for artifacts: the callable's name (``build`` -> the module's last part)."""
        stem = Path(self.source).stem if self.source.endswith(".py") else self.source.rsplit(".", 1)[-1]
        leaf = self.attr.rsplit(".", 1)[-1]
        name = stem if leaf in ("build", "create", "make", "model", "get_model") else leaf
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "model"

    @classmethod
    def parse(cls, text: str) -> UserModelSpec:
        source, _, attr = text.rpartition(":")
        if not source or not _ATTR.fullmatch(attr):
            raise DeployError(f"--model {text!r}: give a registered name (hsnet models), module:callable or "
                              "path/to/file.py:callable")  # fmt: skip
        return cls(source, attr)


def _import(spec: UserModelSpec) -> Any:
    if spec.source.endswith(".py"):
        path = Path(spec.source)
        if not path.is_file():
            raise DeployError(f"--model {spec.source}:{spec.attr}: no such file {path}")
        name = f"hsnet_user_model_{abs(hash(path.resolve()))}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise DeployError(f"--model {path}: not a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file may raise anything at import
            sys.modules.pop(name, None)
            raise DeployError(f"--model {path}: importing it failed ({type(e).__name__}: {e})") from None
        return module
    try:
        return importlib.import_module(spec.source)
    except ModuleNotFoundError as e:
        raise DeployError(f"--model {spec.source}:{spec.attr}: no module named {e.name!r} (is it on PYTHONPATH or "
                          "installed? a file path must end in .py)") from None  # fmt: skip
    except Exception as e:  # noqa: BLE001
        raise DeployError(f"--model {spec.source}: importing it failed ({type(e).__name__}: {e})") from None


def load_user_model(text: str, kwargs: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Import the spec, call it (with ``kwargs``), and return ``(module, name)``.

    Raises:
        DeployError: a malformed spec, a module or file that does not import, a missing attribute, a callable
            that fails or does not return a ``torch.nn.Module``.
    """
    from torch import nn

    spec = UserModelSpec.parse(text)
    obj: Any = _import(spec)
    for part in spec.attr.split("."):
        if not hasattr(obj, part):
            raise DeployError(f"--model {text}: {spec.source} has no attribute {spec.attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj, spec.name
    if not callable(obj):
        raise DeployError(f"--model {text}: {spec.attr} is not callable; name a function or class returning an "
                          "nn.Module")  # fmt: skip
    try:
        module = obj(**(kwargs or {}))
    except Exception as e:  # noqa: BLE001
        raise DeployError(f"--model {text}: calling {spec.attr}() failed ({type(e).__name__}: {e})") from None
    if not isinstance(module, nn.Module):
        raise DeployError(f"--model {text}: {spec.attr}() returned {type(module).__name__}, not a torch.nn.Module")
    return module, spec.name


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``"1,3,160,160"`` -> ``(1, 3, 160, 160)``: batch, channels and a square side.

    Raises:
        DeployError: not four positive integers, or a non-square side.
    """
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise DeployError(f"--input-shape {text!r}: give batch,channels,height,width as 4 positive integers, "
                          "e.g. 1,3,224,224")  # fmt: skip
    if dims[2] != dims[3]:
        raise DeployError(f"--input-shape {text}: hsnet deploys square inputs only (height = width)")
    if dims[2] > 4096 or dims[1] > 64 or dims[0] > 4096:
        raise DeployError(f"--input-shape {text}: at most batch 4096, 64 channels and a 4096 side")
    return dims  # type: ignore[return-value]
