"""An ONNX file the user already has, as the start of an export: checked before anything loads it, described, and
copied into the pipeline's form (input ``input``, output ``logits``, hsnet metadata, one file).

``hsnet deploy export --onnx model.onnx`` starts here. Without the PyTorch module the reference of every parity
check is the user's file itself, run by onnxruntime in fp32; targets that convert the module (CoreML, pt2, the
litert-torch TFLite converter) are not available.

External data is checked (:mod:`deploy.external_data`) before any loader follows a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.deps import require
from deploy.errors import DeployError
from deploy.external_data import check_external_data
from deploy.metadata import INPUT_NAME, OUTPUT_NAME
from deploy.prepare import PreparedModel, class_labels, normalization
from hsnet.toolbox.digests import file_sha256

__all__ = ["OnnxReference", "OnnxSource", "import_onnx", "prepare_onnx", "inspect_onnx", "load_onnx_proto"]

_FLOAT = 1  # onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class OnnxSource:
    """What an ONNX classifier takes and returns.

    Attributes:
        path: the file.
        in_chans: input channels (NCHW).
        input_size: the square spatial side.
        batch: the fixed batch, or ``None`` for a symbolic one.
        num_classes: logits per image.
        opset: the default-domain opset.
        input_name: the graph's input name.
        output_name: the graph's output name.
    """

    path: Path
    in_chans: int
    input_size: int
    batch: int | None
    num_classes: int
    opset: int | None
    input_name: str
    output_name: str


def load_onnx_proto(path: str | Path, *, external: bool = False):  # noqa: ANN201 - onnx is imported lazily
    """``onnx.load`` of ``path`` (without external data unless ``external``, which is checked first).

    Raises:
        DeployError: no such file, or bytes that are not an ONNX model.
    """
    onnx = require("onnx", "onnx", "reading ONNX files")
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"{path}: no such ONNX file")
    if external:
        check_external_data(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning, ValueError...
        raise DeployError(
            f"{path} is not a readable ONNX model (truncated, or another kind of file: {type(e).__name__})"
        ) from None
    if not proto.graph.node and not proto.graph.input:
        raise DeployError(f"{path} is not a readable ONNX model (no graph: empty, truncated or another kind of file)")
    if external:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as e:
            raise DeployError(f"{path}: its external data cannot be read ({e})") from None
    return proto


def inspect_onnx(path: str | Path) -> OnnxSource:
    """Describe ONNX classifier ``path``: one float32 NCHW input with a static, square spatial size, one
    ``(batch, classes)`` output.

    Raises:
        DeployError: not an ONNX file, external data outside its folder, or a graph of another shape, in one line
            saying what hsnet deploys.
    """
    path = Path(path)
    proto = load_onnx_proto(path)
    check_external_data(path)
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise DeployError(
            f"{path} has {len(inputs)} input(s) and {len(graph.output)} output(s); hsnet deploys image classifiers "
            "with one image input and one logits output"
        )
    (inp,), out = inputs, graph.output[0]
    dims = _dims(inp)
    if inp.type.tensor_type.elem_type != _FLOAT or len(dims) != 4:
        raise DeployError(f"{path}: input {inp.name!r} is not a float32 NCHW image batch (shape {_text(dims)})")
    b, c, h, w = dims
    if not all(isinstance(d, int) for d in (c, h, w)):
        raise DeployError(
            f"{path}: input {inp.name!r} has symbolic channels or spatial size {_text(dims)}; export it with a fixed "
            "(C, S, S) (only the batch may be symbolic)"
        )
    if h != w:
        raise DeployError(f"{path}: input {inp.name!r} is {h}x{w}; hsnet deploys square inputs only")
    odims = _dims(out)
    if len(odims) != 2 or not isinstance(odims[1], int):
        raise DeployError(f"{path}: output {out.name!r} has shape {_text(odims)}; hsnet deploys (batch, classes)")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return OnnxSource(
        path=path,
        in_chans=int(c),
        input_size=int(h),
        batch=b if isinstance(b, int) and b > 0 else None,
        num_classes=int(odims[1]),
        opset=opset,
        input_name=inp.name,
        output_name=out.name,
    )


def _dims(value) -> list[int | str]:  # noqa: ANN001 - onnx.ValueInfoProto
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _text(dims: list[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def import_onnx(source: OnnxSource, dst: Path, *, batch: int | None, metadata: dict[str, str]) -> Path:
    """Write ``source`` as the pipeline's graph: input ``input``, output ``logits``, batch ``batch`` (``None``:
    symbolic), ``metadata`` as its ``metadata_props``, external data inlined; then ``onnx.checker``.

    Raises:
        DeployError: a fixed batch that the graph cannot take (its batch is fixed to another value), or a graph
            that fails the checker.
    """
    from deploy.onnx_export import check_onnx, set_metadata
    from hsnet.toolbox.atomic import atomic_path

    onnx = require("onnx", "onnx", "reading ONNX files")
    if source.batch is not None and batch != source.batch:
        want = "a dynamic batch" if batch is None else f"batch {batch}"
        raise DeployError(
            f"{source.path} has a fixed batch of {source.batch}; {want} needs a graph exported with it "
            f"(give --batch {source.batch})"
        )
    proto = load_onnx_proto(source.path, external=True)
    _rename_value(proto.graph, source.input_name, INPUT_NAME)
    _rename_value(proto.graph, source.output_name, OUTPUT_NAME)
    for value in (proto.graph.input, proto.graph.output):
        for v in value:
            if v.name in (INPUT_NAME, OUTPUT_NAME):
                dim = v.type.tensor_type.shape.dim[0]
                if batch is None:
                    dim.Clear()
                    dim.dim_param = "batch"
                else:
                    dim.Clear()
                    dim.dim_value = batch
    set_metadata(proto, metadata)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(proto, str(tmp))
    check_onnx(Path(dst))
    return Path(dst)


def _rename_value(graph, old: str, new: str) -> None:  # noqa: ANN001 - onnx.GraphProto
    """Rename value ``old`` to ``new`` everywhere in ``graph`` (inputs, outputs, node edges, value infos)."""
    if old == new:
        return
    taken = (
        {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    )
    if new in taken:
        _rename_value(graph, new, f"{new}_renamed")  # a graph that already uses the name elsewhere
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.name == old:
            v.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


class OnnxReference:
    """The user's ONNX file run by onnxruntime in fp32: the reference of every parity check of an export that
    starts from ONNX. Called like a PyTorch model (a float tensor batch in, a logits tensor out), any batch size:
    a fixed-batch graph is fed its batch at a time, the last call padded."""

    def __init__(self, source: OnnxSource, *, threads: int | None = 1) -> None:
        from deploy.targets.onnx import session_options

        ort = require("onnxruntime", "onnx", "running ONNX files")
        check_external_data(source.path)
        try:
            self.session = ort.InferenceSession(
                str(source.path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"onnxruntime cannot load {source.path} ({first})") from None
        self.source = source

    def eval(self) -> OnnxReference:
        return self

    def __call__(self, x):  # noqa: ANN001, ANN204 - a torch tensor in and out
        import numpy as np
        import torch

        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        step = self.source.batch or len(arr)
        outs = []
        for i in range(0, len(arr), step):
            chunk = arr[i : i + step]
            n = len(chunk)
            if n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            (out,) = self.session.run([self.source.output_name], {self.source.input_name: chunk})
            outs.append(np.asarray(out, dtype=np.float32)[:n])
        return torch.from_numpy(np.concatenate(outs))


def prepare_onnx(
    path: Path,
    *,
    name: str | None = None,
    labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    threads: int | None = 1,
) -> PreparedModel:
    """The user's ONNX classifier as the start of an export (:mod:`deploy.onnx_import`): its input and output
    read from the graph, its weights named by the file's sha256, onnxruntime on the file as the reference.

    Args:
        path: the ``.onnx`` file (external data must lie beside it).
        name: the name artifacts carry [default: the file's stem].
        labels, mean, std: as for :func:`prepare_module` (mean/std describe the normalization the graph expects).
        threads: onnxruntime threads of the reference.

    Raises:
        DeployError: not a usable ONNX classifier (see :func:`deploy.onnx_import.inspect_onnx`), or labels/mean/std
            of the wrong length.
    """
    import re

    source = inspect_onnx(Path(path))
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", source.path.stem)[:64] or "model"
    c, k = source.in_chans, source.num_classes
    mean, std = normalization(c, mean, std)
    labels = class_labels(k, labels)
    return PreparedModel(
        name=name,
        reference=OnnxReference(source, threads=threads),  # type: ignore[arg-type] - called like a module
        model=None,
        fused=None,
        labels=labels,
        mean=mean,
        std=std,
        input_size=source.input_size,
        weights=f"onnx sha256:{file_sha256(source.path)}",
        onnx=source,
    )
