"""hsnet metadata inside a ``.tflite`` file: one entry of the model's own ``metadata`` table.

A TFLite model is a flatbuffer whose ``Model.metadata`` maps names to buffers (the converters store
``min_runtime_version`` and ``CONVERSION_METADATA`` there). The exporter adds an entry :data:`METADATA_NAME`
whose buffer is the JSON object of the artifact's string key/values (:class:`deploy.metadata.ModelMetadata`).
It travels inside the one file, any LiteRT runtime ignores it, and it is read back without any TFLite package.

This is not the TFLite *Support* metadata (``TFLITE_METADATA``, the schema of the unmaintained
``tflite-support`` package that Android's code generators read): that package pins old numpy/flatbuffers and
does not install beside this stack.

Reading is a small bounds-checked flatbuffer walk (no dependency, so a file can be inspected with only a
runtime installed); writing re-packs the model with ``ai_edge_litert``'s flatbuffer object API.
"""

from __future__ import annotations

import json
import struct

from deploy.deps import require
from deploy.errors import DeployError

__all__ = ["METADATA_NAME", "embed_metadata", "metadata_entries", "read_hsnet_metadata"]

#: Name of the metadata entry holding hsnet's JSON.
METADATA_NAME = "hsnet_metadata"
_IDENTIFIER = b"TFL3"
# Field numbers in the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class _Reader:
    """Bounds-checked reads of flatbuffer tables (every malformed offset becomes :class:`DeployError`)."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = memoryview(data)
        self.source = source

    def fail(self, what: str) -> DeployError:
        return DeployError(f"{self.source}: not a valid TFLite flatbuffer ({what})")

    def u16(self, pos: int) -> int:
        return self._unpack("<H", pos)

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def i32(self, pos: int) -> int:
        return self._unpack("<i", pos)

    def u64(self, pos: int) -> int:
        return self._unpack("<Q", pos)

    def _unpack(self, fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.data):
            raise self.fail(f"offset {pos} outside the {len(self.data)}-byte file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field ``index`` of the table at ``table``, or None when it is absent."""
        vtable = table - self.i32(table)
        vtable_size = self.u16(vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self.u16(vtable + slot)
        return table + offset if offset else None

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int, stride: int) -> tuple[int, int]:
        """(start, length) of the vector referenced at ``pos``."""
        start = self.deref(pos)
        n = self.u32(start)
        if start + 4 + n * stride > len(self.data):
            raise self.fail(f"a vector of {n} elements runs past the end of the file")
        return start + 4, n

    def table_at(self, vector_start: int, k: int) -> int:
        return self.deref(vector_start + 4 * k)

    def string(self, pos: int) -> str:
        start, n = self.vector(pos, 1)
        return bytes(self.data[start : start + n]).decode("utf-8", errors="replace")


def metadata_entries(data: bytes, *, source: str = "model") -> dict[str, bytes]:
    """Every ``Model.metadata`` entry of a ``.tflite`` file: name -> the bytes of its buffer.

    Raises:
        DeployError: ``data`` is not a TFLite flatbuffer or is truncated/corrupt (one line naming ``source``).
    """
    r = _Reader(data, source)
    if len(data) < 8 or bytes(data[4:8]) != _IDENTIFIER:
        raise r.fail("missing the TFL3 file identifier")
    model = r.deref(0)
    meta_pos = r.field(model, _MODEL_METADATA)
    if meta_pos is None:
        return {}
    buffers_pos = r.field(model, _MODEL_BUFFERS)
    if buffers_pos is None:
        raise r.fail("metadata without buffers")
    buffers, n_buffers = r.vector(buffers_pos, 4)
    entries, n_entries = r.vector(meta_pos, 4)
    out: dict[str, bytes] = {}
    for k in range(n_entries):
        entry = r.table_at(entries, k)
        name_pos = r.field(entry, _METADATA_NAME)
        index_pos = r.field(entry, _METADATA_BUFFER)
        name = r.string(name_pos) if name_pos is not None else ""
        index = r.u32(index_pos) if index_pos is not None else 0
        if index >= n_buffers:
            raise r.fail(f"metadata {name!r} points at buffer {index} of {n_buffers}")
        out[name] = _buffer_bytes(r, r.table_at(buffers, index))
    return out


def _buffer_bytes(r: _Reader, buffer: int) -> bytes:
    data_pos = r.field(buffer, _BUFFER_DATA)
    if data_pos is not None:
        start, n = r.vector(data_pos, 1)
        return bytes(r.data[start : start + n])
    offset_pos, size_pos = r.field(buffer, _BUFFER_OFFSET), r.field(buffer, _BUFFER_SIZE)
    if offset_pos is None or size_pos is None:
        return b""
    offset, size = r.u64(offset_pos), r.u64(size_pos)  # data stored after the flatbuffer (large models)
    if offset + size > len(r.data):
        raise r.fail("a buffer runs past the end of the file")
    return bytes(r.data[offset : offset + size])


def read_hsnet_metadata(data: bytes, *, source: str = "model") -> dict[str, str]:
    """The hsnet key/values stored by :func:`embed_metadata` (empty if the file carries none).

    Raises:
        DeployError: a corrupt file, or an hsnet entry that is not a JSON object of strings.
    """
    raw = metadata_entries(data, source=source).get(METADATA_NAME)
    if raw is None:
        return {}
    try:
        values = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeployError(f"{source}: the {METADATA_NAME} entry is not JSON ({e})") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise DeployError(f"{source}: the {METADATA_NAME} entry is not an object of strings")
    return values


def embed_metadata(data: bytes, metadata: dict[str, str], *, io_names: tuple[str, str] | None = None) -> bytes:
    """A copy of the ``.tflite`` flatbuffer ``data`` with ``metadata`` stored as entry :data:`METADATA_NAME`.

    An existing entry of that name is replaced; everything else (weights, operators, signatures, the
    converters' own metadata) is kept.

    Args:
        io_names: (input, output) names given to the single input and output tensor of the main graph and of
            every signature (converters name them ``serving_default_input:0``, ``Identity``, ``args_0``...).
    """
    import numpy as np

    fb = require("ai_edge_litert.tools.flatbuffer_utils", "tflite", "embedding TFLite metadata")
    schema = require("ai_edge_litert.schema_py_generated", "tflite", "embedding TFLite metadata")
    model = fb.read_model_from_bytearray(bytearray(data))
    if io_names is not None:
        _rename_io(model, schema, *io_names)
    payload = json.dumps(dict(metadata), sort_keys=True).encode("utf-8")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME]
    model.metadata = [*kept, entry]
    return bytes(fb.convert_object_to_bytearray(model))


def _rename_io(model, schema, input_name: str, output_name: str) -> None:  # noqa: ANN001 - ModelT, schema module
    """Name the one input and output; give a model without signatures the usual ``serving_default`` one."""
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return
    graph.tensors[graph.inputs[0]].name = input_name
    graph.tensors[graph.outputs[0]].name = output_name
    if not model.signatureDefs:  # TFLiteConverter.from_concrete_functions writes none
        signature = schema.SignatureDefT()
        signature.signatureKey = "serving_default"
        signature.subgraphIndex = 0
        signature.inputs, signature.outputs = [schema.TensorMapT()], [schema.TensorMapT()]
        signature.inputs[0].tensorIndex = graph.inputs[0]
        signature.outputs[0].tensorIndex = graph.outputs[0]
        model.signatureDefs = [signature]
    for signature in model.signatureDefs:
        if len(signature.inputs or []) == 1 and len(signature.outputs or []) == 1:
            signature.inputs[0].name = input_name
            signature.outputs[0].name = output_name


def _name(entry) -> str:  # noqa: ANN001 - MetadataT
    name = entry.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)
