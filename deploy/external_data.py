"""ONNX external data (tensors stored in files beside the ``.onnx``), checked by hsnet itself before any loader
follows a path: a model from a stranger may name any file on the disk (``/etc/passwd``, ``../../secret``), and
onnxruntime's own check is not one hsnet should rely on.
"""

from __future__ import annotations

from pathlib import Path

from deploy.deps import require
from deploy.errors import DeployError

__all__ = ["check_external_data"]


def check_external_data(path: str | Path) -> list[Path]:
    """The external-data files of ONNX ``path``, after checking that each one is a relative path inside the
    model's folder (no ``..``, no absolute path, no link out of the folder) that exists.

    Returns:
        The external files (empty for a self-contained model).

    Raises:
        DeployError: a location outside the folder or missing, naming the tensor and the location.
    """
    onnx = require("onnx", "onnx", "reading ONNX files")
    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, ValueError...
        raise DeployError(
            f"{path} is not a readable ONNX model (truncated, or another kind of file: {type(e).__name__})"
        ) from None
    folder = path.resolve().parent
    found: list[Path] = []
    for tensor in _tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = Path(location)
        target = (folder / where).resolve()
        if not location or where.is_absolute() or ".." in where.parts or folder not in target.parents:
            raise DeployError(
                f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder; "
                "external data must be a relative path beside the .onnx file"
            )
        if not target.is_file():
            raise DeployError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which does not exist")
        if target not in found:
            found.append(target)
    return found


def _tensors(proto):  # noqa: ANN001, ANN202 - onnx.ModelProto
    """Every TensorProto of the model: initializers and tensor attributes, in subgraphs too."""
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
