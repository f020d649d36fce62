"""Load a CoreML ML Program (``.mlpackage``) and evaluate its ``main`` function with numpy.

CoreML itself only runs on Apple platforms. To prove on Linux that a converted package computes what the
PyTorch model computes, the package is read as CoreML would read it (``Manifest.json`` -> the root
``model.mlmodel`` protobuf -> the MIL program and its ``weights/weight.bin`` constants) and every operation of
the program is executed in order by :mod:`deploy.targets.coreml.mil.ops`.

Precision model: every operation computes in float32 and its results are cast to the dtype the program declares
for them. A float16 program (``compute_precision=FLOAT16``) declares float16 for everything between its
``cast`` operations, so values are rounded to float16 after every operation, as on a device that stores
activations in float16; devices that also accumulate in float16 (the Neural Engine) round more often, so the
fp16 figures of this evaluator are a lower bound of the on-device error, not a measurement of it.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError, UnsupportedOperationError
from deploy.targets.coreml.mil.blob import BlobFile
from deploy.targets.coreml.mil.ops import OPS

__all__ = ["FeatureInfo", "MLProgram", "Operation", "TensorType", "load_program", "read_spec"]

MODEL_PATH_PREFIX = "@model_path/"
#: Largest tensor a program may declare (elements): a package from a stranger must not make the evaluator
#: allocate without bound (hsnet's largest activation at 224x224 has under 2**22 elements).
MAX_ELEMENTS = 2**30


@dataclass(frozen=True)
class TensorType:
    """A MIL tensor type: ``dtype`` (``None`` for strings) and ``shape`` (``None`` entries are unknown dims)."""

    dtype: np.dtype | None
    shape: tuple[int | None, ...]


@dataclass
class Operation:
    """One MIL operation of the ``main`` block.

    Attributes:
        type: MIL operation type (``conv``, ``add``...).
        name: the operation's ``name`` attribute (the converter's node name), else its first output name.
        inputs: parameter name -> list of bindings; a binding is a variable name (``str`` wrapped in
            :class:`_Var`) or an immediate value (numpy array or ``str``).
        outputs: ``(variable name, declared type)`` per output.
    """

    type: str
    name: str
    inputs: dict[str, list[Any]]
    outputs: list[tuple[str, TensorType]]

    @property
    def output_name(self) -> str:
        return self.outputs[0][0] if self.outputs else self.name


@dataclass(frozen=True)
class _Var:
    name: str


@dataclass(frozen=True)
class FeatureInfo:
    """A model input or output as the model description declares it.

    Attributes:
        name: feature name.
        kind: ``"image"``, ``"multiarray"`` or another CoreML feature kind.
        shape: declared shape (for an image: ``(1, channels, height, width)``).
        dtype: ``"float32"``, ``"float16"``... for a multiarray; the color space (``RGB``, ``BGR``,
            ``GRAYSCALE``) for an image.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class MLProgram:
    """An ML Program loaded from a ``.mlpackage``, callable with numpy inputs.

    Attributes:
        path: the package folder.
        spec_version: CoreML specification version of the model.
        opset: the program's opset (``CoreML6`` = iOS 16 / macOS 13).
        inputs: function input name -> declared tensor type.
        outputs: names of the function outputs, in order.
        operations: non-``const`` operations in program order.
        constants: ``const`` outputs by variable name.
        feature_inputs: model-description inputs (image or multiarray).
        feature_outputs: model-description outputs.
        metadata: the description's ``author``, ``short_description``, ``version``, ``license`` and
            every user-defined key.
        const_ops: number of ``const`` operations.
    """

    path: Path
    spec_version: int
    opset: str
    inputs: dict[str, TensorType]
    outputs: list[str]
    operations: list[Operation]
    constants: dict[str, Any]
    feature_inputs: list[FeatureInfo] = field(default_factory=list)
    feature_outputs: list[FeatureInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    const_ops: int = 0
    _wide: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def op_counts(self) -> dict[str, int]:
        """Operation type -> count, ``const`` included."""
        counts = Counter(o.type for o in self.operations)
        if self.const_ops:
            counts["const"] = self.const_ops
        return dict(counts)

    def unsupported(self) -> list[Operation]:
        """Operations the evaluator cannot run: unknown type or a parameter its implementation lacks."""
        return [o for o in self.operations if _unsupported_reason(o) is not None]

    def check_supported(self) -> None:
        """Raise :class:`UnsupportedOperationError` naming the first operation the evaluator cannot run."""
        bad = self.unsupported()
        if bad:
            first = bad[0]
            more = f" (and {len(bad) - 1} more: {', '.join(sorted({o.type for o in bad[1:]}))})" if len(bad) > 1 else ""
            raise UnsupportedOperationError(
                f"{self.path.name}: MIL operation {_unsupported_reason(first)} (output {first.output_name!r}) is not "
                f"supported by the numpy evaluator{more}; supported: {', '.join(sorted(OPS))}"
            )

    def run(self, feeds: Mapping[str, np.ndarray], *, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Evaluate the program.

        Args:
            feeds: one array per function input, of the declared shape (cast to the declared dtype).
            outputs: variable names to return (any intermediate variable); default: the function outputs.

        Raises:
            UnsupportedOperationError: an operation the evaluator does not implement (before anything runs).
            DeployError: a missing or misshapen input, or an operation that fails or produces another shape
                than the program declares (names the operation).
        """
        self.check_supported()
        wanted = list(self.outputs if outputs is None else outputs)
        env: dict[str, Any] = {}
        for name, t in self.inputs.items():
            if name not in feeds:
                raise DeployError(f"{self.path.name}: input {name!r} missing; inputs: {', '.join(self.inputs)}")
            x = np.asarray(feeds[name])
            if not _shape_fits(x.shape, t.shape):
                raise DeployError(
                    f"{self.path.name}: input {name!r} must have shape {_fmt(t.shape)}, got {tuple(x.shape)}"
                )
            env[name] = x.astype(t.dtype, copy=False) if t.dtype is not None else x
        last_use = self._last_use(set(wanted))
        for i, operation in enumerate(self.operations):
            kwargs = {k: self._resolve(b, env) for k, b in operation.inputs.items()}
            try:
                result = OPS[operation.type](**kwargs)
            except (ValueError, TypeError, IndexError, KeyError) as e:
                raise DeployError(
                    f"{self.path.name}: MIL operation {operation.type} (output {operation.output_name!r}) failed: {e}"
                ) from None
            results = result if isinstance(result, tuple) else (result,)
            if len(results) != len(operation.outputs):
                raise DeployError(
                    f"{self.path.name}: MIL operation {operation.type} (output {operation.output_name!r}) gave "
                    f"{len(results)} outputs, the program declares {len(operation.outputs)}"
                )
            for (name, t), r in zip(operation.outputs, results, strict=True):
                r = np.asarray(r)
                if t.dtype is not None:
                    r = r.astype(t.dtype, copy=False)
                if not _shape_fits(r.shape, t.shape):
                    raise DeployError(
                        f"{self.path.name}: MIL operation {operation.type} (output {name!r}) computed shape "
                        f"{tuple(r.shape)}, the program declares {_fmt(t.shape)}"
                    )
                env[name] = r
            for name in last_use.get(i, ()):
                env.pop(name, None)
        missing = [n for n in wanted if n not in env and n not in self.constants]
        if missing:
            raise DeployError(f"{self.path.name}: no variable named {', '.join(missing)} in the program")
        return {n: env[n] if n in env else np.asarray(self.constants[n]) for n in wanted}

    def _resolve(self, bindings: list[Any], env: dict[str, Any]) -> Any:
        values = []
        for b in bindings:
            if isinstance(b, _Var):
                if b.name in env:
                    values.append(env[b.name])
                elif b.name in self.constants:
                    values.append(self._constant(b.name))
                else:
                    raise DeployError(f"{self.path.name}: variable {b.name!r} is used before it is defined")
            else:
                values.append(b)
        return values[0] if len(values) == 1 else values

    def _constant(self, name: str) -> Any:
        """A constant, float16 ones widened to float32 once: every operation computes in float32 anyway, and
        widening a large weight on every call dominated the run time of fp16 programs (VGG: 3x)."""
        value = self.constants[name]
        if isinstance(value, np.ndarray) and value.dtype == np.float16:
            if name not in self._wide:
                self._wide[name] = value.astype(np.float32)
            return self._wide[name]
        return value

    def _last_use(self, keep: set[str]) -> dict[int, list[str]]:
        """Operation index -> variables no later operation reads (freed there to bound memory)."""
        last: dict[str, int] = {}
        for i, o in enumerate(self.operations):
            for bindings in o.inputs.values():
                for b in bindings:
                    if isinstance(b, _Var) and b.name not in self.constants:
                        last[b.name] = i
        out: dict[int, list[str]] = {}
        for name, i in last.items():
            if name not in keep:
                out.setdefault(i, []).append(name)
        return out


def _unsupported_reason(o: Operation) -> str | None:
    fn = OPS.get(o.type)
    if fn is None:
        return f"{o.type!r}"
    params = inspect.signature(fn).parameters
    extra = sorted(set(o.inputs) - set(params))
    if extra:
        return f"{o.type!r} with parameter(s) {', '.join(extra)}"
    return None


def _elements(shape: tuple[int | None, ...]) -> int:
    return int(np.prod([d for d in shape if d is not None], dtype=np.float64))


def _shape_fits(shape: tuple[int, ...], declared: tuple[int | None, ...]) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared, strict=True))


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# ---- loading ----------------------------------------------------------------------------------------------------


def _proto_modules() -> tuple[Any, Any]:
    from deploy.targets.coreml.mil._ct import import_coremltools

    import_coremltools()
    from coremltools.proto import MIL_pb2, Model_pb2

    return MIL_pb2, Model_pb2


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refusing a path that leaves ``root`` (a package from a stranger may try)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DeployError(f"{root}: {what} path {relative!r} points outside the package")
    return path


def root_model_file(package: Path) -> Path:
    """The ``model.mlmodel`` that ``Manifest.json`` names as the package's root model.

    Raises:
        DeployError: not a folder, no or unreadable ``Manifest.json``, or the root model file is missing.
    """
    package = Path(package)
    if not package.is_dir():
        raise DeployError(f"{package}: not an .mlpackage folder")
    manifest = package / "Manifest.json"
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        entry = info["itemInfoEntries"][info["rootModelIdentifier"]]
        relative = entry["path"]
    except FileNotFoundError:
        raise DeployError(f"{package}: not an .mlpackage (no Manifest.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DeployError(f"{package}: unreadable Manifest.json ({type(e).__name__}: {e})") from None
    path = _inside(package / "Data", str(relative), "root model")
    if not path.is_file():
        raise DeployError(f"{package}: the root model {relative} named by Manifest.json is missing")
    return path


def read_spec(package: Path) -> Any:
    """The package's root ``Model`` protobuf (``coremltools.proto.Model_pb2.Model``).

    Raises:
        DeployError: see :func:`root_model_file`; or the protobuf does not parse (truncated or corrupt).
    """
    _, model_pb2 = _proto_modules()
    path = root_model_file(package)
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError type depends on the protobuf backend
        raise DeployError(f"{package}: corrupt model file {path.name} ({type(e).__name__}: {e})") from None
    return spec


def load_program(package: str | Path, *, function: str = "main") -> MLProgram:
    """Read an ML Program package and all its constants.

    Args:
        package: the ``.mlpackage`` folder.
        function: the program function to evaluate.

    Raises:
        DeployError: not an ML Program package, a missing or corrupt model or weight file, or a program
            structure the evaluator cannot read (nested blocks, non-tensor values); one line naming it.
    """
    package = Path(package)
    mil_pb2, _ = _proto_modules()
    spec = read_spec(package)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise DeployError(f"{package}: holds a CoreML {kind or 'empty'} model, not an ML Program")
    program = spec.mlProgram
    if function not in program.functions:
        raise DeployError(f"{package}: no function {function!r}; functions: {', '.join(program.functions)}")
    fn = program.functions[function]
    if fn.opset not in fn.block_specializations:
        raise DeployError(f"{package}: function {function!r} has no block for its opset {fn.opset}")
    block = fn.block_specializations[fn.opset]
    model_dir = root_model_file(package).parent
    reader = _ValueReader(mil_pb2, model_dir, package)

    inputs = {v.name: reader.tensor_type(v.type) for v in fn.inputs}
    operations: list[Operation] = []
    constants: dict[str, Any] = {}
    const_ops = 0
    for o in block.operations:
        if o.blocks:
            raise DeployError(f"{package}: MIL operation {o.type} has nested blocks, which the evaluator cannot run")
        outputs = [(v.name, reader.tensor_type(v.type)) for v in o.outputs]
        for name, t in outputs:
            if any(d is not None and d < 0 for d in t.shape) or _elements(t.shape) > MAX_ELEMENTS:
                raise DeployError(f"{package}: variable {name!r} declares an unreasonable shape {_fmt(t.shape)}")
        if o.type == "const":
            const_ops += 1
            if "val" not in o.attributes or len(outputs) != 1:
                raise DeployError(f"{package}: malformed const operation {outputs[0][0] if outputs else '?'}")
            constants[outputs[0][0]] = reader.value(o.attributes["val"], outputs[0][0])
            continue
        inputs_ = {
            key: [
                _Var(b.name) if b.WhichOneof("binding") == "name" else reader.value(b.value, key) for b in arg.arguments
            ]
            for key, arg in o.inputs.items()
        }
        name_attr = o.attributes.get("name")
        name = reader.value(name_attr, "name") if name_attr is not None else ""
        operations.append(
            Operation(
                type=o.type, name=str(name or (outputs[0][0] if outputs else o.type)), inputs=inputs_, outputs=outputs
            )
        )
    return MLProgram(
        path=package,
        spec_version=int(spec.specificationVersion),
        opset=fn.opset,
        inputs=inputs,
        outputs=list(block.outputs),
        operations=operations,
        constants=constants,
        feature_inputs=[_feature(f) for f in spec.description.input],
        feature_outputs=[_feature(f) for f in spec.description.output],
        metadata=_metadata(spec),
        const_ops=const_ops,
    )


def _metadata(spec: Any) -> dict[str, str]:
    meta = spec.description.metadata
    out = {
        "author": meta.author,
        "short_description": meta.shortDescription,
        "version": meta.versionString,
        "license": meta.license,
    }
    out = {k: v for k, v in out.items() if v}
    out.update(dict(meta.userDefined))
    return out


def _feature(f: Any) -> FeatureInfo:
    kind = f.type.WhichOneof("Type") or "unknown"
    if kind == "imageType":
        from coremltools.proto import FeatureTypes_pb2

        space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(f.type.imageType.colorSpace)
        channels = 1 if space.startswith("GRAYSCALE") else 3
        return FeatureInfo(f.name, "image", (1, channels, f.type.imageType.height, f.type.imageType.width), space)
    if kind == "multiArrayType":
        from coremltools.proto import FeatureTypes_pb2

        arr = f.type.multiArrayType
        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()
        return FeatureInfo(f.name, "multiarray", tuple(int(d) for d in arr.shape), dtype)
    return FeatureInfo(f.name, kind.removesuffix("Type"), (), "")


class _ValueReader:
    """Turns MIL protobuf values and types into numpy, reading blob constants from the package's weight files."""

    def __init__(self, mil_pb2: Any, model_dir: Path, package: Path) -> None:
        self.pb = mil_pb2
        self.model_dir = model_dir
        self.package = package
        self.blobs: dict[Path, BlobFile] = {}
        t = mil_pb2.DataType
        self.dtypes: dict[int, np.dtype | None] = {
            t.Value("BOOL"): np.dtype(np.bool_),
            t.Value("STRING"): None,
            t.Value("FLOAT16"): np.dtype(np.float16),
            t.Value("FLOAT32"): np.dtype(np.float32),
            t.Value("FLOAT64"): np.dtype(np.float64),
            t.Value("INT8"): np.dtype(np.int8),
            t.Value("INT16"): np.dtype(np.int16),
            t.Value("INT32"): np.dtype(np.int32),
            t.Value("INT64"): np.dtype(np.int64),
            t.Value("UINT8"): np.dtype(np.uint8),
            t.Value("UINT16"): np.dtype(np.uint16),
            t.Value("UINT32"): np.dtype(np.uint32),
            t.Value("UINT64"): np.dtype(np.uint64),
        }

    def tensor_type(self, value_type: Any) -> TensorType:
        kind = value_type.WhichOneof("type")
        if kind != "tensorType":
            raise DeployError(f"{self.package}: a MIL {kind} value cannot be evaluated (only tensors)")
        t = value_type.tensorType
        if t.dataType not in self.dtypes:
            name = self.pb.DataType.Name(t.dataType)
            raise DeployError(f"{self.package}: MIL data type {name} is not supported by the evaluator")
        shape = tuple(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None for d in t.dimensions)
        return TensorType(self.dtypes[t.dataType], shape)

    def value(self, v: Any, what: str) -> Any:
        t = self.tensor_type(v.type)
        kind = v.WhichOneof("value")
        if kind == "blobFileValue":
            if t.dtype is None or any(d is None for d in t.shape):
                raise DeployError(f"{self.package}: blob constant {what!r} has no static tensor type")
            return self._blob(v.blobFileValue.fileName).read(int(v.blobFileValue.offset), t.dtype, t.shape)
        if kind != "immediateValue" or v.immediateValue.WhichOneof("value") != "tensor":
            raise DeployError(f"{self.package}: constant {what!r} is not a tensor value")
        tv = v.immediateValue.tensor
        shape = tuple(d if d is not None else -1 for d in t.shape)
        if t.dtype is None:
            strings = list(tv.strings.values)
            return strings[0] if not shape and len(strings) == 1 else strings
        field_name = tv.WhichOneof("value")
        if field_name == "bytes":
            arr = np.frombuffer(tv.bytes.values, dtype=t.dtype.newbyteorder("<")).astype(t.dtype)
        elif field_name in ("floats", "ints", "bools", "longInts", "doubles"):
            arr = np.asarray(list(getattr(tv, field_name).values)).astype(t.dtype)
        elif field_name is None:
            arr = np.zeros(0, dtype=t.dtype)
        else:
            raise DeployError(f"{self.package}: constant {what!r} stores {field_name}, which is not understood")
        try:
            return arr.reshape(shape)
        except ValueError:
            raise DeployError(
                f"{self.package}: constant {what!r} holds {arr.size} values, its type says {_fmt(t.shape)}"
            ) from None

    def _blob(self, file_name: str) -> BlobFile:
        if not file_name.startswith(MODEL_PATH_PREFIX):
            raise DeployError(f"{self.package}: weight file {file_name!r} is not inside the package")
        path = _inside(self.model_dir, file_name[len(MODEL_PATH_PREFIX) :], "weight file")
        if path not in self.blobs:
            if not path.is_file():
                raise DeployError(f"{self.package}: weight file {file_name[len(MODEL_PATH_PREFIX) :]} is missing")
            self.blobs[path] = BlobFile(path)
        return self.blobs[path]
