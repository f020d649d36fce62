"""CoreML target: an ML Program ``.mlpackage`` (fp32 or fp16) with an image input, converted via ``torch.export``.

Route: the prepared (re-parameterised, rewritten) PyTorch model, wrapped so that it starts with the input
normalization, goes through ``torch.export.export(...).run_decompositions({})`` and ``coremltools.convert``.
coremltools has no ONNX front end any more, and its TorchScript front end fails under numpy 2
(docs/deploy.md), so this target does not start from the ONNX graph.

Design choices (docs/deploy.md, section CoreML):

* **Image input, normalization inside.** ``ct.ImageType`` scales all channels by one factor and adds a
  per-channel bias, which cannot express a per-channel std. So the input is ``ImageType(scale=1/255, bias=0)``
  (pixels 0..255 -> 0..1) and the model starts with a fixed ``(x - mean) * (1/std)`` (a ``sub`` and a ``mul``
  in the program). That is exact; folding the normalization into the first convolution's weights is not,
  because the convolution's zero padding would then pad with ``-mean/std`` instead of ``0`` at the borders.
* **Plain model, not a classifier.** The output is the float32 ``logits`` multiarray, which parity needs, and the
  labels travel as metadata (``labels``, a JSON list, with every other hsnet key). A CoreML classifier
  (``ClassifierConfig``) would turn the output into a label string plus a dictionary; coremltools 9.0 fails
  (``IndexError`` in ``get_func_output``) when a torch.export model keeps a logits output beside the classifier.
* **Batch 1.** A CoreML image input holds one image (coremltools rejects ``(2, 3, H, W)``); apps batch with
  ``MLModel.predictions(from:)``. Other batch settings are refused; the artifact accepts any number of images and
  runs them one by one.
* **iOS 16 / macOS 13** minimum deployment target: the first with float16 multiarray I/O and the ``CoreML6``
  opset; ML Programs need at least iOS 15, and nothing hsnet produces needs iOS 17 (which mainly adds int8
  activation quantization). iOS 16 runs on every iPhone since the 8 (2017).

On Linux :class:`CoreMLArtifact` runs the program with the numpy reference evaluator
:mod:`deploy.targets.coreml.mil`; on macOS with ``MLModel.predict``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from deploy.artifact import Artifact, InputSpec
from deploy.errors import DeployError
from deploy.metadata import OUTPUT_NAME
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from deploy.targets.coreml.mil import MLProgram, load_program
from deploy.targets.coreml.mil._blas import blas_threads, can_set_blas_threads
from deploy.targets.coreml.mil._ct import captured, import_coremltools
from hsnet.toolbox.atomic import atomic_path
from hsnet.toolbox.machine import package_version

__all__ = ["IMAGE_INPUT", "MINIMUM_DEPLOYMENT_TARGET", "CoreMLArtifact", "CoreMLExporter", "ImageNormalization"]

#: Name of the image input of every exported package.
IMAGE_INPUT = "image"
#: ``coremltools.target`` member the packages are converted for.
MINIMUM_DEPLOYMENT_TARGET = "iOS16"


class ImageNormalization(nn.Module):
    """``model((x - mean) * (1 / std))``: the fixed first layer that turns 0..1 pixels into model input.

    Args:
        model: the model that expects normalized input.
        mean: per-channel mean (0..1 pixel units).
        std: per-channel std.
    """

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise DeployError(f"normalization needs one positive std per mean; got mean {mean}, std {std}")
        self.model = model
        shape = (1, len(mean), 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        # 1/std in float64, then rounded once, so the constant is the closest float32 to the exact reciprocal.
        self.register_buffer("inv_std", (1.0 / torch.tensor(std, dtype=torch.float64)).float().view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) * self.inv_std)


class CoreMLExporter(Exporter):
    """Converts the prepared model into an ML Program package with an image input and hsnet metadata.

    Attributes:
        log: what coremltools printed during the last :meth:`export` (also logged to the ``deploy.coreml``
            logger at DEBUG level); normal output stays quiet.
    """

    name = "coreml"
    suffix = ".mlpackage"
    distributions = ("coremltools", "protobuf")
    extra = "coreml"
    precisions = ("fp32", "fp16")
    converters = ("torch.export",)
    module_converters = frozenset({"torch.export"})
    supports_dynamic_batch = False

    def __init__(self) -> None:
        self.log: list[str] = []
        # (model, (size, mean, std), program): the model is held so that `is` identifies it reliably.
        self._exported: tuple[nn.Module, tuple[Any, ...], torch.export.ExportedProgram] | None = None

    def check_available(self, options: ExportOptions) -> None:
        import_coremltools(self.log)

    def batch_error(self, batch: int | None) -> str | None:
        if batch == 1:
            return None
        got = "a dynamic batch" if batch is None else f"batch {batch}"
        return (
            f"target coreml takes one image per prediction (a CoreML image input has batch 1; apps batch with "
            f"MLModel.predictions(from:)); got {got}, valid: --batch 1"
        )

    def preflight(self, ctx: ExportContext) -> list[Finding]:
        """The common graph scan, plus every PyTorch operation coremltools cannot convert (errors)."""
        findings = super().preflight(ctx)
        import_coremltools(self.log)
        from coremltools.converters.mil.frontend.torch.torch_op_registry import is_torch_fx_node_supported

        bad: dict[str, list[str]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # coremltools deprecates its own registry lookup
            for node in self._program(ctx).graph.nodes:
                if node.op == "call_function" and not is_torch_fx_node_supported(node):
                    bad.setdefault(str(node.target), []).append(_node_origin(node))
        for target, origins in sorted(bad.items()):
            findings.append(
                Finding(
                    self.name,
                    "error",
                    f"coremltools {package_version('coremltools')} cannot convert {target} "
                    f"({len(origins)}x, first in {origins[0]})",
                )
            )
        color = "RGB" if len(ctx.mean) == 3 else "grayscale"
        findings.append(
            Finding(
                self.name,
                "info",
                f"normalization inside the package: {color} image input 0..255 scaled by 1/255, then "
                f"(x - mean) / std with the model's mean/std",
            )
        )
        return findings

    def export(self, ctx: ExportContext) -> Path:
        """Convert ``ctx.model`` and write ``<model>_<precision>.mlpackage`` into ``ctx.work_dir``.

        Raises:
            DeployError: the options are not valid for CoreML, or coremltools fails (its first line quoted).
        """
        self.validate(ctx.options)
        ct = import_coremltools(self.log)
        program = self._program(ctx)
        channels, size = len(ctx.mean), ctx.options.input_size
        if channels not in (1, 3):
            raise DeployError(f"a CoreML image input has 1 or 3 channels; this model takes {channels}")
        image = ct.ImageType(
            name=IMAGE_INPUT,
            shape=(1, channels, size, size),
            scale=1.0 / 255.0,
            bias=[0.0] * channels,
            color_layout=ct.colorlayout.RGB if channels == 3 else ct.colorlayout.GRAYSCALE,
        )
        precision = ct.precision.FLOAT16 if ctx.options.precision == "fp16" else ct.precision.FLOAT32
        try:
            with captured(self.log):
                mlmodel = ct.convert(
                    program,
                    inputs=[image],
                    outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                    convert_to="mlprogram",
                    compute_precision=precision,
                    minimum_deployment_target=getattr(ct.target, MINIMUM_DEPLOYMENT_TARGET),
                    skip_model_load=True,  # loading needs macOS; the artifact loads it where it can
                )
        except (KeyboardInterrupt, DeployError):
            raise
        except Exception as e:  # noqa: BLE001 - coremltools raises ValueError, NotImplementedError, RuntimeError...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"coremltools could not convert {ctx.model_name}: {type(e).__name__}: {first}") from None
        _describe(mlmodel, ctx)
        out = Path(ctx.work_dir) / self.artifact_name(ctx)
        staging = Path(tempfile.mkdtemp(dir=ctx.work_dir, prefix=".coreml-"))
        try:
            with captured(self.log):
                mlmodel.save(str(staging / out.name))
            with atomic_path(out) as tmp:
                os.replace(staging / out.name, tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return out

    def _program(self, ctx: ExportContext) -> torch.export.ExportedProgram:
        """The exported program of ``ctx``, made once for :meth:`preflight` and :meth:`export` together."""
        key = (ctx.options.input_size, tuple(ctx.mean), tuple(ctx.std))
        cached = self._exported
        if cached is None or cached[0] is not ctx.model or cached[1] != key:
            with captured(self.log):  # torch.export's deprecation warnings
                cached = self._exported = (ctx.model, key, _export_program(ctx))
        return cached[2]


def _export_program(ctx: ExportContext) -> torch.export.ExportedProgram:
    """``torch.export`` of the normalized model at batch 1, decomposed to core ATen, ``alias`` nodes removed."""
    wrapped = ImageNormalization(ctx.model, tuple(ctx.mean), tuple(ctx.std)).eval()
    example = torch.full((1, len(ctx.mean), ctx.options.input_size, ctx.options.input_size), 0.5)
    try:
        with torch.no_grad():
            program = torch.export.export(wrapped, (example,)).run_decompositions({})
    except Exception as e:  # noqa: BLE001 - torch.export raises many types (UserError, Unsupported, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DeployError(f"torch.export failed on {ctx.model_name}: {type(e).__name__}: {first}") from None
    _drop_aliases(program)
    return program


def _drop_aliases(program: torch.export.ExportedProgram) -> None:
    """Replace ``aten.alias`` nodes by their input.

    torch 2.13 turns a full slice (GhostModule's ``[:, :out_chs]`` when nothing is cut) into ``alias``, which
    coremltools 9.0 cannot convert. In a graph without mutation an alias is the identity.
    """
    graph = program.graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            changed = True
    if changed:
        program.graph_module.recompile()


def _node_origin(node: Any) -> str:
    """The module path a graph node comes from, for messages."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        return list(stack.values())[-1][0] or node.name
    return node.name


def _describe(mlmodel: Any, ctx: ExportContext) -> None:
    """Author, description, hsnet metadata (labels, normalization...) and feature descriptions of the package."""
    from hsnet import __version__

    meta = dict(ctx.metadata)
    meta.setdefault("model", ctx.model_name)
    meta.setdefault("labels", json.dumps(list(ctx.labels)))
    meta.setdefault("num_classes", str(len(ctx.labels)))
    meta.setdefault("mean", json.dumps(list(ctx.mean)))
    meta.setdefault("std", json.dumps(list(ctx.std)))
    meta.setdefault("input_size", str(ctx.options.input_size))
    meta.setdefault("hsnet_version", __version__)
    meta["precision"] = ctx.options.precision
    meta["output_name"] = OUTPUT_NAME
    # What differs from the ONNX/TFLite artifacts: the input is an image and the normalization is inside.
    meta["input_name"] = IMAGE_INPUT
    meta["input_layout"] = "image"
    meta["normalization"] = "inside: image 0..255 * 1/255, then (x - mean) / std"
    mlmodel.author = f"hsnet {meta['hsnet_version']}"
    mlmodel.short_description = (
        f"{ctx.model_name} image classifier, {len(ctx.labels)} classes, {ctx.options.precision}; "
        f"logits out (labels in the 'labels' metadata)"
    )
    mlmodel.version = meta["hsnet_version"]
    mlmodel.user_defined_metadata.update(meta)
    size = ctx.options.input_size
    color = "RGB" if len(ctx.mean) == 3 else "grayscale"
    mlmodel.input_description[IMAGE_INPUT] = (
        f"{color} image, {size}x{size} pixels, 0..255; normalization (mean {list(ctx.mean)}, std {list(ctx.std)}) "
        "is done by the model"
    )
    mlmodel.output_description[OUTPUT_NAME] = f"float32 logits (1, {len(ctx.labels)}), one per label"


class CoreMLArtifact(Artifact):
    """An ``.mlpackage`` ML Program with an image input.

    Called like every artifact with float32 NCHW normalized input; each image is turned back into the 0..255
    pixel values the image input takes, ``(x * std + mean) * 255``, neither clipped nor rounded, so that the
    comparison with PyTorch measures the program and not a quantization of its input (an app feeds 8-bit
    pixels, which the program handles identically). Any number of images is accepted; they run one at a time.

    On macOS the package runs under CoreML (``MLModel.predict``, with the image input declared as a float
    multiarray so that the unrounded pixels reach the program); elsewhere under the numpy reference
    evaluator :mod:`deploy.targets.coreml.mil`.
    """

    suffixes: ClassVar[tuple[str, ...]] = (".mlpackage",)
    runtime: ClassVar[str] = "hsnet numpy MIL evaluator"

    def __init__(self, path: Path, program: MLProgram, *, threads: int | None = None, mlmodel: Any = None) -> None:
        # The evaluator honours ``threads`` through numpy's OpenBLAS; CoreML chooses its own threads, and so does
        # a numpy without OpenBLAS: the figures then say "default threads", which is the truth.
        honoured = mlmodel is None and can_set_blas_threads()
        super().__init__(path, threads=threads if honoured else None)
        self.program = program
        self._mlmodel = mlmodel
        if mlmodel is not None:
            self.runtime = "coreml"  # type: ignore[misc]
        if len(program.inputs) != 1 or OUTPUT_NAME not in program.outputs:
            raise DeployError(
                f"{path}: expected one input and an output {OUTPUT_NAME!r}; the program has inputs "
                f"{list(program.inputs)} and outputs {program.outputs}"
            )
        self._input_name = next(iter(program.inputs))
        shape = program.inputs[self._input_name].shape
        if len(shape) != 4 or any(d is None for d in shape):
            raise DeployError(f"{path}: input {self._input_name!r} must be a fixed NCHW tensor, it is {shape}")
        self._shape: tuple[int, int, int, int] = tuple(int(d) for d in shape)  # type: ignore[assignment]
        feature = next((f for f in program.feature_inputs if f.name == self._input_name), None)
        self._image = feature is not None and feature.kind == "image"
        self._color = feature.dtype if feature is not None else ""
        self._mean, self._std = _normalization(program.metadata, self._shape[1])

    @classmethod
    def load(cls, path: Path, *, threads: int | None = None) -> CoreMLArtifact:
        program = load_program(path)
        mlmodel = _load_mlmodel(Path(path), program) if sys.platform == "darwin" else None
        return cls(Path(path), program, threads=threads, mlmodel=mlmodel)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        c, h, w = self._shape[1:]
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise DeployError(
                f"{self.path.name} takes float32 (N, {c}, {h}, {w}) (NCHW, normalized); got {x.dtype} {tuple(x.shape)}"
            )
        feeds = self._pixels(x) if self._image else x
        out = []
        with blas_threads(self.threads):
            for i in range(x.shape[0]):
                one = feeds[i : i + 1]
                if self._mlmodel is not None:
                    logits = self._mlmodel.predict({self._input_name: one})[OUTPUT_NAME]
                else:
                    logits = self.program.run({self._input_name: one})[OUTPUT_NAME]
                out.append(np.asarray(logits, dtype=np.float32).reshape(1, -1))
        return np.concatenate(out, axis=0) if out else np.zeros((0, 0), dtype=np.float32)

    def _pixels(self, x: np.ndarray) -> np.ndarray:
        if self._mean is None or self._std is None:
            raise DeployError(
                f"{self.path.name} has an image input but no 'mean'/'std' metadata, so normalized input cannot be "
                "turned into pixels"
            )
        shape = (1, -1, 1, 1)
        # In float64, rounded once: the pixels are the closest float32 to the exact inverse of the normalization.
        return ((x * self._std.reshape(shape) + self._mean.reshape(shape)) * 255.0).astype(np.float32)

    @property
    def input_spec(self) -> InputSpec:
        mean = tuple(float(v) for v in self._mean) if self._mean is not None else ()
        std = tuple(float(v) for v in self._std) if self._std is not None else ()
        extra: dict[str, Any] = {"name": self._input_name}
        if self._image:
            extra.update(color_space=self._color, pixel_range="0..255", normalization="inside the model")
        return InputSpec(
            shape=self._shape,
            layout="NCHW",
            dtype="image" if self._image else "float32",
            mean=mean,
            std=std,
            extra=extra,
        )

    @property
    def runtime_version(self) -> str:
        if self._mlmodel is not None:
            return f"CoreML (coremltools {package_version('coremltools')})"
        return f"numpy {np.__version__}"

    def metadata(self) -> dict[str, str]:
        return dict(self.program.metadata)

    def op_counts(self) -> dict[str, int]:
        return self.program.op_counts()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["outputs"] = [
            {"name": f.name, "kind": f.kind, "shape": list(f.shape), "type": f.dtype}
            for f in self.program.feature_outputs
        ]
        info["inputs"] = [
            {"name": f.name, "kind": f.kind, "shape": list(f.shape), "type": f.dtype}
            for f in self.program.feature_inputs
        ]
        info["opset"] = self.program.opset
        info["specification_version"] = self.program.spec_version
        info["evaluator_unsupported_ops"] = sorted({o.type for o in self.program.unsupported()})
        return info


def _normalization(meta: dict[str, str], channels: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """mean/std from the package metadata, or ``(None, None)`` if absent or malformed."""
    try:
        mean = np.asarray(json.loads(meta["mean"]), dtype=np.float64)
        std = np.asarray(json.loads(meta["std"]), dtype=np.float64)
    except (KeyError, ValueError, TypeError):
        return None, None
    if mean.shape != (channels,) or std.shape != (channels,):
        return None, None
    return mean, std


def _load_mlmodel(path: Path, program: MLProgram) -> Any:
    """The package as a CoreML ``MLModel`` whose image input is declared as a float32 multiarray (macOS only).

    The program is unchanged (its input already is a float32 tensor of pixel values); only the model
    description changes, so that ``predict`` takes the exact float pixels instead of an 8-bit image.
    """
    ct = import_coremltools()
    from deploy.targets.coreml.mil import read_spec
    from deploy.targets.coreml.mil.program import root_model_file

    spec = read_spec(path)
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            shape = program.inputs[feature.name].shape
            feature.type.ClearField("imageType")
            feature.type.multiArrayType.shape.extend(int(d) for d in shape)
            feature.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    weights = root_model_file(path).parent / "weights"
    try:
        with captured():
            return ct.models.MLModel(spec, weights_dir=str(weights) if weights.is_dir() else None)
    except Exception as e:  # noqa: BLE001 - CoreML's own load errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DeployError(f"{path}: CoreML cannot load it ({first})") from None
