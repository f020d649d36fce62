"""Stage 2: the prepared model as an ONNX graph, with its metadata inside, fully checked.

The TorchScript-based exporter (``dynamo=False``) is used: it honours the requested opset, writes one file and
names nodes after the module scopes (``/stages/stages.0/stages.0.0/expand/gwc/conv/Conv``), which
:mod:`deploy.bisect` maps back to module names. The dynamo exporter silently raises the opset and needs a
batch-2 example for a dynamic batch (docs/deploy.md).
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import torch
from torch import nn

from deploy.deps import require
from deploy.errors import DeployError
from deploy.metadata import INPUT_NAME, OUTPUT_NAME
from hsnet.toolbox.atomic import atomic_path

__all__ = ["MAX_OPSET", "MIN_OPSET", "check_onnx", "check_opset", "export_onnx", "set_metadata"]

MIN_OPSET = 17
#: Highest opset of the TorchScript-based exporter in torch 2.13.
MAX_OPSET = 20


def check_opset(opset: int) -> int:
    """Return ``opset`` if this exporter can write it.

    Raises:
        DeployError: naming the valid range.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise DeployError(f"ONNX opset {opset!r} is not supported; valid: {MIN_OPSET}..{MAX_OPSET}")
    return opset


def set_metadata(model_proto, metadata: dict[str, str]) -> None:  # noqa: ANN001 - onnx is imported lazily
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` by ``metadata``."""
    del model_proto.metadata_props[:]
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, int, int, int],
    dynamic_batch: bool = False,
    opset: int = MIN_OPSET,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export ``model`` (eval mode) to ``path`` with input ``input`` and output ``logits``, then check it.

    Args:
        model: the prepared model.
        path: the ``.onnx`` file to write (atomically).
        input_shape: NCHW example shape; its batch is the fixed batch unless ``dynamic_batch``.
        dynamic_batch: make dimension 0 of input and output symbolic (``batch``).
        opset: ONNX opset, :data:`MIN_OPSET`..:data:`MAX_OPSET`.
        metadata: string key/values stored as ``metadata_props``.

    Raises:
        DeployError: unsupported opset, an export failure, or a graph that fails ``onnx.checker`` (full check).
    """
    onnx = require("onnx", "onnx", "ONNX export")
    check_opset(opset)
    path = Path(path)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
                torch.onnx.export(
                    model.eval(),
                    (torch.zeros(input_shape),),
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # a full disk, not a model the exporter cannot take (exit 3, hsnet.toolbox.cli)
            raise DeployError(f"ONNX export of {type(model).__name__} failed: {e}") from None
        except Exception as e:  # noqa: BLE001 - torch raises many types; the stage failed either way
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DeployError(f"ONNX export of {type(model).__name__} failed: {first}") from None
        proto = onnx.load(str(tmp))
        set_metadata(proto, metadata or {})
        proto.producer_name = "hsnet"
        onnx.save(proto, str(tmp))
    check_onnx(path)
    return path


def check_onnx(path: Path) -> None:
    """``onnx.checker.check_model(full_check=True)`` (structure, types and shape inference).

    Raises:
        DeployError: the first problem the checker names.
    """
    onnx = require("onnx", "onnx", "ONNX checking")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeployError(f"{path.name} fails onnx.checker: {first}") from None
