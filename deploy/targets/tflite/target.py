"""TFLite target: a ``.tflite`` flatbuffer with an NHWC input, run by LiteRT (``ai-edge-litert``).

Converters (``--converter``):

* ``onnx2tf`` (default, the ONNX-centered route): the pipeline's checked and onnxsim-simplified ONNX graph is
  translated by onnx2tf in a worker process (:mod:`deploy.targets.tflite.onnx2tf`), then written by
  TensorFlow's TFLiteConverter with builtin operators only (no Flex ops for an app to ship).
* ``litert-torch``: the prepared PyTorch model is converted directly (:mod:`deploy.targets.tflite.litert`);
  fixed batch only.

What each precision's file is (both converters):

* ``fp32``: float32 weights, float32 NHWC input and float32 logits.
* ``fp16``: float16 weights (half the size), float32 input and logits; runtimes without fp16 kernels dequantize
  the weights once at load and compute in float32.
* ``int8``: full-integer quantization calibrated on real images: int8 weights (per channel) and activations,
  **int8 input and int8 logits**, each with the scale/zero-point stored in the file (what "full integer" means
  to microcontrollers, NPUs and NNAPI). An app quantizes its normalized NHWC input with
  ``q = round(x / scale) + zero_point`` and dequantizes the logits with ``(q - zero_point) * scale``;
  :class:`TFLiteArtifact` does both.

Dynamic batch (``--dynamic-batch``) is supported by ``onnx2tf``: the input is ``[-1, H, W, C]`` and is resized to
each call's batch; GPU/NNAPI delegates want a fixed batch, so export with ``--batch N`` for them.

The model's labels, normalization, name and weights provenance are stored inside the file as the
``hsnet_metadata`` entry of the flatbuffer's own metadata table (:mod:`deploy.targets.tflite.flatbuffer`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deploy.artifact import Artifact, InputSpec
from deploy.deps import require
from deploy.errors import DeployError, MissingDependencyError
from deploy.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from deploy.targets.tflite.flatbuffer import embed_metadata, metadata_entries, read_hsnet_metadata
from hsnet.toolbox.atomic import atomic_path
from hsnet.toolbox.machine import package_version
from hsnet.toolbox.progress import log

__all__ = ["INT8_FILL_GROUPS", "ONNX2TF_TESTED", "TESTED_ONNX_OPS", "TFLiteArtifact", "TFLiteExporter", "convert_all"]

#: The onnx2tf release this target is tested with. 1.29.17 to 1.29.24 (the newest when written) add a "rescue"
#: transpose to residual additions that puts NHWC tensors back in NCHW and then fail (HSNet at 32x32: a grouped
#: convolution whose width equals its group count is taken for a depthwise one).
ONNX2TF_TESTED = "1.29.16"
#: ONNX operation types converted and checked for parity through onnx2tf by this project's tests.
TESTED_ONNX_OPS = frozenset(
    {"Add", "Clip", "Concat", "Constant", "Conv", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "HardSigmoid",
     "MaxPool", "Mul", "Pad", "Relu", "Sigmoid", "Slice", "Transpose"}
)  # fmt: skip
#: Grouped convolutions (neither one group nor depthwise) are filled out to this many groups, block-diagonally,
#: before the int8 conversion, per CPU family (``--arch``), where measurement showed that it wins: on x86-64
#: (Intel Xeon, AVX-512 VNNI/AMX, ai-edge-litert 2.3.0 with XNNPACK, HSNet 224x224, 1 thread, two bench runs of 2
#: processes) the int8 file took 1.20x its fp32 time as it was and 0.55x filled to 1 group (2 groups 0.59x,
#: 4 groups 0.77x). On aarch64 filling loses: the emulated Cortex-A76 counted 126.1 M guest instructions per
#: inference filled against 85.8 M as it was, the Cortex-A53 452.9 M against 172.9 M (docs/deploy.md).
#: The filled file is larger (zeros are stored: HSNet 7.99 MB instead of 3.37 MB). fp32 and fp16 keep the groups
#: (filled fp32 took 2.4x the time).
INT8_FILL_GROUPS: dict[str, int] = {"x86_64": 1}
_ONNX2TF_NEEDS = ("onnx", "onnxruntime", "onnxsim", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx")
_INSTALL_ONNX2TF = (
    "pip install 'hsnet[tflite]' && pip install --no-deps onnx2tf=="
    + ONNX2TF_TESTED
    + " (onnx2tf pins exact old versions of the whole ONNX/TensorFlow stack, so it is installed without them)"
)


class TFLiteExporter(Exporter):
    """Converts to ``.tflite`` with onnx2tf (from the ONNX graph) or litert-torch (from the PyTorch model)."""

    name = "tflite"
    suffix = ".tflite"
    distributions = ("onnx2tf", "tensorflow", "tf_keras", "ai-edge-litert", "tflite-runtime", "litert-torch",
                     "ai-edge-quantizer")  # fmt: skip
    extra = "tflite"
    precisions = ("fp32", "fp16", "int8")
    tuner = ("int8: the group count grouped convolutions are filled to, whole files timed in LiteRT here or measured "
             "on --remote")  # fmt: skip
    converters = ("onnx2tf", "litert-torch")
    module_converters = frozenset({"litert-torch"})
    # TFLite has no sequence or optional tensor types.
    unsupported_ops = frozenset(
        {"SequenceConstruct", "SequenceEmpty", "SequenceAt", "SequenceInsert", "SequenceErase", "SequenceLength",
         "SplitToSequence", "ConcatFromSequence", "SequenceMap", "Optional", "OptionalGetElement",
         "OptionalHasElement"}
    )  # fmt: skip
    supports_dynamic_batch = True

    def check_available(self, options: ExportOptions) -> None:
        """Check (without importing TensorFlow) that the chosen converter and the LiteRT runtime are installed.

        Raises:
            MissingDependencyError: names the extra (``tflite``, or ``litert-torch``); for onnx2tf itself, the
                message gives the ``pip install --no-deps`` command.
        """
        require("ai_edge_litert.interpreter", self.extra, "the TFLite target (LiteRT runtime)")
        if _converter(options) == "litert-torch":
            from deploy.targets.tflite.litert import EXTRA

            for module in ("litert_torch", "ai_edge_quantizer"):
                _find(module, EXTRA, "the litert-torch TFLite converter")
            return
        for module in _ONNX2TF_NEEDS:
            _find(module, self.extra, "the onnx2tf TFLite converter")
        if importlib.util.find_spec("onnx2tf") is None:
            error = MissingDependencyError("onnx2tf", self.extra, "the onnx2tf TFLite converter")
            error.args = (
                f"the onnx2tf TFLite converter needs the Python module 'onnx2tf', which is not installed; "
                f"install it with: {_INSTALL_ONNX2TF}",
            )
            raise error

    def validate(self, options: ExportOptions) -> None:
        super().validate(options)
        if options.batch is None and _converter(options) == "litert-torch":
            raise DeployError(
                "converter litert-torch needs a fixed batch; use --batch N, or --converter onnx2tf for a dynamic one"
            )
        if options.tune and options.precision == "int8" and _converter(options) == "litert-torch":
            raise DeployError(
                "--tune fills the ONNX graph's grouped convolutions before the onnx2tf conversion; "
                "converter litert-torch converts the PyTorch module: use --converter onnx2tf"
            )

    def preflight(self, ctx: ExportContext) -> list[Finding]:
        """The common graph scan plus TFLite specifics: onnx2tf version, untested operations, dynamic batch."""
        findings = super().preflight(ctx)
        if _converter(ctx.options) == "onnx2tf":
            version = package_version("onnx2tf")
            if version not in (ONNX2TF_TESTED, "not installed"):
                findings.append(
                    Finding(
                        self.name,
                        "warning",
                        f"onnx2tf {version} is not the tested {ONNX2TF_TESTED} (1.29.17-1.29.24 move residual "
                        "additions back to NCHW, which breaks HSNet's grouped convolutions at 32x32); parity will tell",
                    )
                )
            if not ctx.onnx_simplified:
                findings.append(
                    Finding(self.name, "info", "onnxsim failed in the pipeline: onnx2tf runs the onnxsim command")
                )
            from deploy.preflight import scan_graph
            from deploy.targets.tflite.rewrites import rewrite_for_tflite

            applied, left = rewrite_for_tflite(ctx.onnx_path)
            for line in applied:
                findings.append(Finding(self.name, "info", f"TFLite rewrite: zero Pad instead of -inf padding: {line}"))
            if left:
                findings.append(
                    Finding(
                        self.name,
                        "warning",
                        f"padded MaxPool on a possibly negative input ({', '.join(left[:3])}): in int8 its -inf "
                        "padding makes LiteRT's XNNPACK delegate refuse the model (parity will tell)",
                    )
                )

            untested = sorted(set(scan_graph(ctx.onnx_path).ops) - TESTED_ONNX_OPS - self.unsupported_ops)
            if untested:
                findings.append(
                    Finding(
                        self.name,
                        "warning",
                        f"operations not covered by the TFLite tests: {', '.join(untested)} (onnx2tf may fail or "
                        "need operators outside the TFLite builtins)",
                    )
                )
        if ctx.options.batch is None:
            findings.append(
                Finding(
                    self.name,
                    "info",
                    "dynamic batch: the TFLite input is [-1, H, W, C], resized for each call; GPU/NNAPI delegates "
                    "want a fixed batch (--batch N)",
                )
            )
        return findings

    def export(self, ctx: ExportContext) -> Path:
        """Convert ``ctx`` at ``ctx.options.precision``; the file carries ``ctx.metadata`` (layout NHWC)."""
        return convert_all(ctx, (ctx.options.precision,))[ctx.options.precision]

    def export_all(self, ctx: ExportContext, precisions: Sequence[str]) -> dict[str, Path]:
        """Every precision from one converter run (:func:`convert_all`): TensorFlow's import and the onnx2tf
        translation are paid once, not once per precision. ``ctx.calibration`` is needed when int8 is asked."""
        return convert_all(ctx, tuple(precisions))


def convert_all(ctx: ExportContext, precisions: tuple[str, ...]) -> dict[str, Path]:
    """Write one TFLite artifact per precision into ``ctx.work_dir`` from a single converter run.

    :meth:`TFLiteExporter.export` is this with one precision; several at once share TensorFlow's import and the
    onnx2tf translation (about 7 s of a 10-15 s conversion at 32x32). ``ctx.options.precision`` is ignored;
    ``ctx.calibration`` is needed for ``int8``.

    Returns:
        precision -> artifact path (``<model>_<precision>.tflite``).
    """
    converter = _converter(ctx.options)
    raw_dir = ctx.work_dir / f"{converter}-raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = {p: raw_dir / f"{p}.tflite" for p in precisions}
    notes: dict[str, str] = {}  # precision -> how its graph differs (metadata ``int8_filled``)
    tunings: dict[str, dict[str, Any]] = {}  # precision -> what --tune measured (metadata ``tuning``)
    if converter == "litert-torch":
        from deploy.targets.tflite.litert import convert_torch

        record = convert_torch(ctx.model, ctx.input_shape, raw, work_dir=raw_dir, calibration=ctx.calibration)
    else:
        from deploy.targets.onnx.groups import fill_float_convs
        from deploy.targets.tflite.onnx2tf import convert_onnx
        from deploy.targets.tflite.rewrites import rewrite_for_tflite

        graph = raw_dir / f"{ctx.onnx_path.stem}_tflite.onnx"
        rewrite_for_tflite(ctx.onnx_path, graph)
        graphs = {graph: raw}
        fill = INT8_FILL_GROUPS.get(ctx.options.arch) if "int8" in raw else None
        records: list[Any] = []  # each converter run's record
        tuned = _tune_int8(ctx, graph, raw_dir, records) if "int8" in raw and ctx.options.tune else None
        if tuned is not None:  # --tune: int8 is the variant measured fastest where it will run
            path, tuning = tuned
            path.replace(raw["int8"])
            graphs = {graph: {p: f for p, f in raw.items() if p != "int8"}}
            after = tuning["groups_after"]
            how = f"filled to {after} group(s)" if after != tuning["groups_before"] else "kept as they are"
            notes["int8"] = f"grouped convolutions {how}, measured fastest on {tuning['where']} (--tune)"
            tunings["int8"] = tuning
        elif fill is not None:  # int8 from a graph of its own, its grouped convolutions filled for this family
            int8_graph = raw_dir / f"{ctx.onnx_path.stem}_tflite_int8.onnx"
            filled = fill_float_convs(graph, int8_graph, fill)
            if filled:
                graphs = {graph: {p: f for p, f in raw.items() if p != "int8"}, int8_graph: {"int8": raw["int8"]}}
                notes["int8"] = (f"{len(filled)} grouped convolution(s) filled to {fill} group(s) for "
                                 f"{ctx.options.arch} (block-diagonal zeros: the same convolution)")  # fmt: skip
                log(f"[deploy] tflite/int8: {notes['int8']}")
        records[:0] = [
            convert_onnx(
                g,
                outs,
                work_dir=raw_dir,
                calibration=ctx.calibration if "int8" in outs else None,
                simplified=ctx.onnx_simplified,
                name=ctx.onnx_path.name,
            )
            for g, outs in graphs.items()
            if outs
        ]
        record = records[0]
        for i, extra in enumerate(records[1:], 1):  # int8's own graph, or --tune's variants
            record.timings.update({f"graph {i + 1} {k}": v for k, v in extra.timings.items()})
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in record.timings.items())
    versions = ", ".join(f"{k} {v}" for k, v in record.versions.items())
    log(f"[deploy] tflite via {converter} ({versions}): {steps}")
    exporter = TFLiteExporter()
    paths = {}
    for precision, path in raw.items():
        meta = {**ctx.metadata, "precision": precision, "input_layout": "NHWC", "converter": converter}
        meta.update({f"{k}_version": v for k, v in record.versions.items() if k in ("onnx2tf", "litert-torch")})
        if precision in notes:
            meta["int8_filled"] = notes[precision]
        if precision in tunings:
            meta["tuning"] = json.dumps(tunings[precision], separators=(",", ":"))
        options = dataclasses.replace(ctx.options, precision=precision)
        out = ctx.work_dir / exporter.artifact_name(dataclasses.replace(ctx, options=options))
        with atomic_path(out) as tmp:
            tmp.write_bytes(embed_metadata(path.read_bytes(), meta, io_names=(INPUT_NAME, OUTPUT_NAME)))
        path.unlink()
        paths[precision] = out
    return paths


def _tune_int8(
    ctx: ExportContext, graph: Path, raw_dir: Path, records: list[Any]
) -> tuple[Path, dict[str, Any]] | None:
    """``--tune`` for int8: the file converted from each filling variant of ``graph`` (grouped convolutions to
    every divisor of their group count, :func:`deploy.tuning.tune_filling`), measured where it will run; whole
    files, since cutting one layer out would take a converter run per layer and variant. None when ``graph`` has
    no grouped convolution."""
    from deploy.targets.onnx.groups import divisors, fill_float_convs, float_grouped_convs
    from deploy.targets.tflite.onnx2tf import convert_onnx
    from deploy.tuning import tune_filling

    groups = [g for _, g in float_grouped_convs(graph)]
    if not groups:
        log("[deploy] tflite/int8 --tune: no grouped convolution, nothing to tune")
        return None
    if ctx.images is None:
        raise DeployError("--tune needs images to time the variants on; none were loaded")
    x = ctx.images[: ctx.options.batch or 1]

    def build(g: int) -> tuple[Path, int]:
        variant, out = raw_dir / f"int8-fill{g}.onnx", raw_dir / f"int8-fill{g}.tflite"
        changed = fill_float_convs(graph, variant, g)
        records.append(convert_onnx(variant, {"int8": out}, work_dir=raw_dir, calibration=ctx.calibration,
                                    simplified=ctx.onnx_simplified, name=ctx.onnx_path.name))  # fmt: skip
        variant.unlink()
        return out, len(changed)

    def load(path: Path) -> Any:
        artifact = TFLiteArtifact.load(path, threads=1)
        return lambda: artifact(x)

    return tune_filling(divisors(max(groups)), build, ctx.options.tune_site, "tflite", load, what="tflite/int8")


def _converter(options: ExportOptions) -> str:
    return options.converter or TFLiteExporter.converters[0]


def _find(module: str, extra: str, purpose: str) -> None:
    """Like :func:`deploy.deps.require` without importing (TensorFlow takes seconds to import)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(module, extra, purpose)


def _interpreter_module() -> tuple[Any, str, str]:
    """(interpreter module, runtime name, distribution) of ai-edge-litert, else of the older tflite-runtime."""
    try:
        import ai_edge_litert.interpreter as module

        return module, "ai-edge-litert", "ai-edge-litert"
    except ImportError:
        pass
    try:
        import tflite_runtime.interpreter as module

        return module, "tflite-runtime", "tflite-runtime"
    except ImportError:
        raise MissingDependencyError("ai_edge_litert", "tflite", "running TFLite artifacts") from None


class TFLiteArtifact(Artifact):
    """A ``.tflite`` file run by the LiteRT interpreter (``ai_edge_litert``; ``tflite_runtime`` if only it exists).

    Calling convention as every artifact: float32 NCHW normalized images in, float32 logits out. Inside, the
    batch is transposed to NHWC, quantized for an int8 input, run in calls of the file's fixed batch (the last
    call padded) or with the input resized for a dynamic batch, and the logits dequantized.

    Attributes:
        xnnpack: whether the XNNPACK delegate (LiteRT's default CPU acceleration) is applied; False runs the
            builtin kernels only, as a runtime without XNNPACK would.
    """

    suffixes: ClassVar[tuple[str, ...]] = (".tflite",)
    runtime: ClassVar[str] = "ai-edge-litert"

    def __init__(
        self, path: Path, interpreter: Any, runtime: str, dist: str, *, threads: int | None, xnnpack: bool
    ) -> None:
        super().__init__(path, threads=threads)
        self.interpreter = interpreter
        self.runtime = runtime  # type: ignore[misc] - the instance names the runtime actually used
        self._dist = dist
        self.xnnpack = xnnpack
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise DeployError(f"{path}: expected one 4-D image input and one output, got {len(inputs)} inputs")
        self._in, self._out = inputs[0], outputs[0]
        signature = self._in.get("shape_signature", self._in["shape"])
        self._dynamic = int(signature[0]) == -1
        self._batch = int(self._in["shape"][0])
        self._meta: dict[str, str] | None = None

    @classmethod
    def load(cls, path: Path, *, threads: int | None = None, xnnpack: bool = True) -> TFLiteArtifact:
        """Open ``path``; a truncated or corrupt file raises :class:`DeployError` naming it.

        Args:
            threads: interpreter threads (``None``: the runtime's default).
            xnnpack: apply the XNNPACK delegate (the default); False runs the builtin reference kernels.
        """
        path = Path(path)
        module, runtime, dist = _interpreter_module()
        metadata_entries(path.read_bytes(), source=str(path))  # a clear error for a file that is not a flatbuffer
        kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
        if not xnnpack:
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"{path}: not a loadable TFLite model ({first})") from None
        return cls(path, interpreter, runtime, dist, threads=threads, xnnpack=xnnpack)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        _, h, w, c = (int(d) for d in self._in["shape"])
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != (c, h, w) or len(x) == 0:
            raise DeployError(
                f"{self.path.name} takes float32 (N, {c}, {h}, {w}) (NCHW, normalized); got {x.dtype} {tuple(x.shape)}"
            )
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if self._dynamic:
            return self._run(nhwc)
        outs = []
        for i in range(0, len(nhwc), self._batch):
            chunk = nhwc[i : i + self._batch]
            n = len(chunk)
            if n < self._batch:  # pad with copies of the last image, then drop their logits
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._batch - n, axis=0)])
            outs.append(self._run(chunk)[:n])
        return np.concatenate(outs)

    def _run(self, nhwc: np.ndarray) -> np.ndarray:
        out = self.raw(_quantize(nhwc, self._in))
        return _dequantize(out, self._out).reshape(len(nhwc), -1)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        if self._dynamic and int(it.get_input_details()[0]["shape"][0]) != len(x):
            it.resize_tensor_input(self._in["index"], list(x.shape))
            it.allocate_tensors()
        it.set_tensor(self._in["index"], x)
        it.invoke()
        return it.get_tensor(self._out["index"])

    @property
    def input_spec(self) -> InputSpec:
        _, h, w, c = (int(d) for d in self._in["shape"])
        try:
            m = ModelMetadata.from_strings(self.metadata())
            mean, std = m.mean, m.std
        except DeployError:
            mean = std = ()
        extra: dict[str, Any] = {"name": self._in["name"], "output_dtype": np.dtype(self._out["dtype"]).name}
        if _is_quantized(self._in):
            extra["quantization"] = _quant_params(self._in)
        if _is_quantized(self._out):
            extra["output_quantization"] = _quant_params(self._out)
        return InputSpec(
            shape=(-1 if self._dynamic else self._batch, h, w, c),
            layout="NHWC",
            dtype=np.dtype(self._in["dtype"]).name,
            mean=mean,
            std=std,
            extra=extra,
        )

    @property
    def runtime_version(self) -> str:
        return self._version(package_version(self._dist))

    def metadata(self) -> dict[str, str]:
        if self._meta is None:
            self._meta = read_hsnet_metadata(self.path.read_bytes(), source=str(self.path))
        return dict(self._meta)

    def op_counts(self) -> dict[str, int]:
        try:
            ops = self.interpreter._get_ops_details()  # noqa: SLF001 - the only per-op listing both runtimes offer
        except AttributeError:
            return {}
        return dict(Counter(op["op_name"] for op in ops))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["outputs"] = [
            {
                "name": o["name"],
                "shape": [int(d) for d in o.get("shape_signature", o["shape"])],
                "dtype": np.dtype(o["dtype"]).name,
                **({"quantization": _quant_params(o)} if _is_quantized(o) else {}),
            }
            for o in self.interpreter.get_output_details()
        ]
        info["xnnpack"] = self.xnnpack
        return info


def _is_quantized(detail: dict) -> bool:
    return np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16) and detail["quantization"][0] != 0


def _quant_params(detail: dict) -> dict[str, float | int]:
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)}


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if not _is_quantized(detail):
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if not _is_quantized(detail):
        return np.asarray(y, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
