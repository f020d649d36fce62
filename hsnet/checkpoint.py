"""Checkpoints that are safe to load from strangers and never half-written.

A checkpoint is one ``torch.save`` file holding a plain dictionary (see :class:`Checkpoint`): only dicts, lists,
tuples, strings, numbers, ``None`` and tensors, so that ``torch.load(weights_only=True)`` reads it. Loading never
unpickles arbitrary objects: a file crafted to run code when unpickled is refused before any of its code runs.
Writing goes through :func:`hsnet.toolbox.atomic.atomic_path` (temporary sibling, fsync, rename), so a
``kill -9`` during a write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hsnet.errors import HSNetError
from hsnet.toolbox.atomic import atomic_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "to_plain",
]

FORMAT = "hsnet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(HSNetError):
    """A checkpoint that is missing, corrupt, unsafe, of another format, or does not fit what was asked."""


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model, preprocess its input and resume its training.

    Attributes:
        model: registry name (``hsnet.create_model(model, num_classes=num_classes, **model_args)`` rebuilds it).
        num_classes: classifier width.
        input_size: square input side the model was trained at.
        in_chans: input channels the model takes (gray data is repeated to this many channels).
        classes: class names, index = label.
        mean: per-channel normalization mean in 0..1 pixel units (``(x / 255 - mean) / std``).
        std: per-channel normalization std.
        state_dict: model weights and buffers (on CPU).
        optimizer: optimizer ``state_dict`` (None in an export-only checkpoint).
        scheduler: learning-rate scheduler ``state_dict``.
        rng: torch, numpy and python RNG states (see :func:`rng_state`).
        epoch: number of completed epochs.
        config: the resolved training configuration as a plain dict.
        metrics: metrics of this epoch plus ``best_top1``, ``best_epoch`` and the per-epoch ``history``.
        model_args: architecture overrides passed to the model builder.
        hsnet_version: version of hsnet that wrote the file.
    """

    model: str
    num_classes: int
    input_size: int
    in_chans: int
    classes: list[str]
    mean: list[float]
    std: list[float]
    state_dict: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    hsnet_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: a plain dict with the ``format`` marker first."""
        from hsnet import __version__

        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        body["hsnet_version"] = self.hsnet_version or __version__
        body["state_dict"] = {k: v.detach().cpu() for k, v in self.state_dict.items()}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **to_plain(body)}

    def build_model(self) -> nn.Module:
        """The model this checkpoint describes, with its weights loaded, in eval mode.

        Raises:
            CheckpointError: the model is not registered here or the weights do not fit it.
        """
        from hsnet.registry import create_model

        try:
            model = create_model(self.model, num_classes=self.num_classes, **self.model_args)
        except HSNetError as e:
            raise CheckpointError(f"cannot rebuild the checkpoint's model: {e}") from None
        except (TypeError, ValueError, RuntimeError) as e:  # a model_args value of the wrong type or range
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CheckpointError(
                f"its model_args {self.model_args!r} do not build {self.model} ({type(e).__name__}: {first})"
            ) from None
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"the checkpoint's weights do not fit {self.model}: {first}") from None
        return model.eval()


def to_plain(obj: Any) -> Any:
    """``obj`` as plain containers (dataclasses -> dict, tuples -> lists, paths -> str) loadable with weights_only.

    Raises:
        TypeError: for an object that has no plain form (a bug in the caller, never user input).
    """
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k if isinstance(k, (int, str)) else str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    raise TypeError(f"{type(obj).__name__} has no plain form for a checkpoint")


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically: the old file stays intact until the new one is complete.

    The data is fsync'd before the rename and the folder after it, so the new file survives a power cut too.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint.to_dict(), buffer)  # in memory: torch's writer turns a full disk into "unexpected pos"
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None  # the checkpoint's name, not the temporary's
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems refuse to open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "num_classes": int,
    "input_size": int,
    "in_chans": int,
    "classes": list,
    "mean": list,
    "std": list,
    "state_dict": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "optimizer": (dict, type(None)),
    "scheduler": (dict, type(None)),
    "rng": (dict, type(None)),
    "epoch": int,
    "config": dict,
    "metrics": dict,
    "model_args": dict,
    "hsnet_version": str,
}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        CheckpointError: one line naming the file: missing, truncated or corrupt, refused because it holds
            Python objects (code would run when unpickled; it never does), or not an hsnet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}")
    _sniff(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the restricted unpickler warns about foreign pickle protocols
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {path} refused: {_unpickling_reason(e)}") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse untrusted bytes is "corrupt"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({first})") from None
    return _validate(data, path)


def _sniff(path: Path) -> None:
    """Refuse, by its first bytes, a file that ``torch.save`` did not write (a zip archive; a legacy pickle), saying
    what it looks like instead of passing on the unpickler's "Unsupported operand 8"."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return
    if not head:
        kind = "an empty file"
    elif path.suffix.lower() == ".onnx" or b"onnx" in head[:64].lower() or head[:1] == b"\x08":
        kind = "an ONNX model or another protobuf (deploy it with hsnet deploy export --onnx)"
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "a text file"
    else:
        kind = f"another kind of file (it starts with bytes {head[:4].hex(' ')})"
    raise CheckpointError(f"checkpoint {path} is not a file written by torch.save: it is {kind}")


def _unpickling_reason(e: pickle.UnpicklingError) -> str:
    """Condense torch's multi-paragraph weights_only error into the offending part."""
    text = str(e)
    match = re.search(r"GLOBAL ([\w.]+)", text)
    if match:
        return f"it would import {match.group(1)} when unpickled (only tensors and plain data are accepted)"
    match = re.search(r"WeightsUnpickler error: ([^\n]*\n*[^\n]+)", text)
    detail = " ".join(match.group(1).split()) if match else "not a weights-only file"
    return f"it is not a weights-only torch file ({detail})"


def _validate(data: Any, path: Path) -> Checkpoint:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = type(data).__name__ if not isinstance(data, dict) else f"format={data.get('format')!r}"
        raise CheckpointError(f"{path} is not an hsnet checkpoint (found {found}; expected format={FORMAT!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format_version {version!r}; this hsnet reads {FORMAT_VERSION}")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise CheckpointError(f"checkpoint {path} lacks the field {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise CheckpointError(f"checkpoint {path}: field {key!r} has the wrong type {type(data[key]).__name__}")
    for key, kind in _OPTIONAL.items():
        if key in data and not isinstance(data[key], kind):
            raise CheckpointError(f"checkpoint {path}: field {key!r} has the wrong type {type(data[key]).__name__}")
    bad = [k for k, v in data["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: state_dict entry {bad[0]!r} is not a named tensor")
    broken = [k for k, v in data["state_dict"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(
            f"checkpoint {path}: {len(broken)} weight tensor(s) hold NaN or inf (first: {broken[0]}); its outputs "
            "would mean nothing (a diverged run or a damaged file)"
        )
    if data["num_classes"] < 1 or data["input_size"] < 1 or data["in_chans"] < 1:
        raise CheckpointError(f"checkpoint {path}: num_classes, input_size and in_chans must be positive")
    if len(data["classes"]) != data["num_classes"]:
        raise CheckpointError(
            f"checkpoint {path} names {len(data['classes'])} classes but has num_classes={data['num_classes']}"
        )
    if len(data["mean"]) != data["in_chans"] or len(data["std"]) != data["in_chans"]:
        raise CheckpointError(f"checkpoint {path}: mean/std need in_chans={data['in_chans']} values each")
    names = {f.name for f in dataclasses.fields(Checkpoint)}
    return Checkpoint(**{k: v for k, v in data.items() if k in names})


def load_model(
    path: str | Path, *, model: str | None = None, num_classes: int | None = None
) -> tuple[nn.Module, Checkpoint]:
    """Load a checkpoint and rebuild its model in eval mode on the CPU.

    Args:
        path: checkpoint file.
        model: if given, the registry name the checkpoint must hold.
        num_classes: if given, the class count the checkpoint must have.

    Returns:
        ``(model, checkpoint)``; preprocessing (``input_size``, ``in_chans``, ``mean``, ``std``) and class names
        are on the checkpoint.

    Raises:
        CheckpointError: unreadable or unsafe file, or a checkpoint of another model or class count than asked.
    """
    ckpt = load_checkpoint(path)
    if model is not None and ckpt.model != model:
        raise CheckpointError(f"checkpoint {path} holds model {ckpt.model!r}, not {model!r}")
    if num_classes is not None and ckpt.num_classes != num_classes:
        raise CheckpointError(
            f"checkpoint {path} has {ckpt.num_classes} classes ({ckpt.model}), not the {num_classes} asked for"
        )
    try:
        net = ckpt.build_model()
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    return net, ckpt


def rng_state() -> dict[str, Any]:
    """The torch, numpy (global) and python ``random`` states as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured.

    Raises:
        CheckpointError: the state is malformed.
    """
    try:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint RNG state is malformed ({e})") from None
