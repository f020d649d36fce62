"""ONNX target: the checked (and simplified) graph itself, in fp32 or fp16, run with onnxruntime.

* fp32: the pipeline's graph, byte for byte.
* fp16: weights and arithmetic in float16 with float32 input and output (onnxruntime's own
  ``float16`` converter, so no extra dependency); for GPU and mobile runtimes that run fp16 natively.
* int8: static QDQ calibrated on real images (u8 activations, s8 per-channel weights), grouped convolutions
  filled to one group where that is bit-identical (:mod:`deploy.targets.onnx.int8`); float32 input and output.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deploy.artifact import Artifact, InputSpec
from deploy.deps import require
from deploy.errors import DeployError
from deploy.metadata import OUTPUT_NAME, ModelMetadata
from deploy.targets.base import ExportContext, Exporter, ExportOptions, Finding
from deploy.targets.onnx.session import session_options
from hsnet.toolbox.machine import package_version

__all__ = ["OnnxArtifact", "OnnxExporter", "session_options"]


class OnnxExporter(Exporter):
    """Writes the pipeline's ONNX graph as an artifact (fp32) or converts it to float16 (fp16)."""

    name = "onnx"
    suffix = ".onnx"
    distributions = ("onnx", "onnxruntime", "onnxsim")
    extra = "onnx"
    precisions = ("fp32", "fp16", "int8")
    converters = ("torch.onnx",)
    tuner = "grouped convolutions' group counts, timed in onnxruntime here (fp32, int8)"

    def check_available(self, options: ExportOptions) -> None:
        for module in ("onnx", "onnxruntime", "onnxsim"):
            require(module, self.extra, "the ONNX target")

    def preflight(self, ctx: ExportContext) -> list[Finding]:
        """Only the rewrites applied: the artifact is the checked graph itself, which onnxruntime runs whole."""
        from deploy.preflight import rewrite_findings

        return rewrite_findings(self.name, ctx.rewrites)

    def export(self, ctx: ExportContext) -> Path:
        onnx = require("onnx", self.extra, "the ONNX target")
        from deploy.onnx_export import check_onnx, set_metadata

        out = ctx.work_dir / self.artifact_name(ctx)
        if ctx.options.precision == "fp32" and ctx.options.tune:
            return _export_tuned(ctx, out)
        if ctx.options.precision == "fp32":
            shutil.copyfile(ctx.onnx_path, out)
            return out
        if ctx.options.precision == "int8":
            return _export_int8(ctx, out)
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(ctx.onnx_path))
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
        _sort_topologically(half.graph)  # the converter appends the input casts at the end of the node list
        meta = {p.key: p.value for p in model.metadata_props}
        meta["precision"] = ctx.options.precision
        set_metadata(half, meta)
        onnx.save(half, str(out))
        check_onnx(out)
        return out


def _export_tuned(ctx: ExportContext, out: Path) -> Path:
    """The fp32 graph with each grouped convolution's fastest exact variant here (:mod:`.tune`); the choices and
    their gains go into the artifact's metadata (``tuning``), whence the manifest."""
    import json

    import onnx

    from deploy.onnx_export import check_onnx, set_metadata
    from deploy.targets.onnx.tune import tune_onnx
    from hsnet.toolbox.progress import log

    if ctx.images is None:
        raise DeployError("--tune needs the parity images to prove the tuned graph equal; none were loaded")
    tuned = ctx.work_dir / f"{out.stem}.tuned.onnx"
    if ctx.options.tune_site.remote is None:
        report = tune_onnx(ctx.onnx_path, tuned, ctx.images[:16], threads=1)
        log(f"[deploy] onnx/fp32 --tune: {report.describe()}")
        tuning = report.to_dict()
    else:
        from deploy.targets.onnx.groups import fill_float_convs, float_grouped_convs
        from deploy.targets.onnx.tune import MAX_ABS

        groups = [g for _, g in float_grouped_convs(ctx.onnx_path)]
        kept = _tune_on_device(ctx, groups, lambda g, dst: len(fill_float_convs(ctx.onnx_path, dst, g)), "fp32")
        if kept is None:
            shutil.copyfile(ctx.onnx_path, out)
            return out
        kept[0].replace(tuned)
        tuning = kept[1]
        tuning["max_abs"] = _max_abs(ctx.onnx_path, tuned, ctx.images[:16], ctx.options.batch)
        if tuning["max_abs"] > MAX_ABS:
            raise DeployError(f"--tune: the tuned graph differs from the original by {tuning['max_abs']:.2e} "
                              f"(> {MAX_ABS:g}); not kept")  # fmt: skip
    model = onnx.load(str(tuned))
    meta = {p.key: p.value for p in model.metadata_props}
    meta["tuning"] = json.dumps(tuning, separators=(",", ":"))
    set_metadata(model, meta)
    onnx.save(model, str(out))
    check_onnx(out)
    tuned.unlink(missing_ok=True)
    return out


def _export_int8(ctx: ExportContext, out: Path) -> Path:
    """Static QDQ int8, then grouped convolutions filled to the family's group count (:data:`.int8.FILL_GROUPS`;
    with ``--tune``: to each layer's fastest
    group count measured here, :func:`deploy.targets.onnx.tune.tune_int8`) when the result is bit-identical to the
    plain QDQ model on the calibration images (else the plain model; the metadata says which)."""
    import json

    import onnx

    from deploy.onnx_export import check_onnx, set_metadata
    from deploy.targets.onnx.int8 import FILL_GROUPS, fill_grouped_convs, quantize_qdq
    from hsnet.toolbox.progress import log

    if ctx.calibration is None:
        raise DeployError("ONNX int8 needs calibration images (--images or --calibration); none were given")
    plain = ctx.work_dir / f"{out.stem}.qdq.onnx"
    quantize_qdq(ctx.onnx_path, plain, ctx.calibration, batch=ctx.options.batch)
    filled = ctx.work_dir / f"{out.stem}.filled.onnx"
    tuning = None
    if ctx.options.tune and ctx.options.tune_site.remote is not None:
        from deploy.targets.onnx.int8 import grouped_convs

        groups = [c["groups"] for c in grouped_convs(onnx.load(str(plain)))]
        records: dict[int, list[dict[str, Any]]] = {}

        def fill(g: int, dst: Path) -> int:
            records[g] = fill_grouped_convs(plain, dst, target_groups=g)
            return len(records[g])

        kept = _tune_on_device(ctx, groups, fill, "int8")
        changed, how = [], ""
        if kept is not None:  # the kept variant is the filled candidate, checked for bit-identity below
            kept[0].replace(filled)
            tuning = kept[1]
            changed = records[tuning["groups_after"]]
            how = f"to {tuning['groups_after']} group(s), measured fastest on {tuning['where']} (--tune)"
    elif ctx.options.tune:
        from deploy.targets.onnx.tune import tune_int8

        choices, layers = tune_int8(plain, threads=1)
        tuning = {"runtime": f"onnxruntime {package_version('onnxruntime')}", "threads": 1,
                  "layers": [c.to_dict() for c in layers]}  # fmt: skip
        changed = fill_grouped_convs(plain, filled, per_layer=choices)
        how = "to each one's fastest group count here (--tune)"
    else:
        target = FILL_GROUPS.get(ctx.options.arch)
        changed = fill_grouped_convs(plain, filled, target_groups=target) if target else []
        how = f"to {target} group(s) for {ctx.options.arch}"
    chosen, note = plain, "static QDQ, u8 activations, s8 per-channel weights"
    if changed:
        same = _same_outputs(plain, filled, ctx.calibration[:16], ctx.options.batch)
        if same:
            chosen = filled
            note += f"; {len(changed)} grouped convolution(s) filled {how} (bit-identical on 16 images)"
        else:
            note += f"; filling {len(changed)} grouped convolution(s) was not bit-identical here, so not applied"
    if tuning is not None:
        tuning["kept"] = len(changed) if chosen is filled else 0
    log(f"[deploy] onnx/int8: {note}")
    model = onnx.load(str(chosen))
    meta = {**ctx.metadata, "precision": "int8", "int8": note,
            "int8_filled": json.dumps([c["name"] for c in changed] if chosen is filled else [])}  # fmt: skip
    if tuning is not None:
        meta["tuning"] = json.dumps(tuning, separators=(",", ":"))
    set_metadata(model, meta)
    onnx.save(model, str(out))
    check_onnx(out)
    for tmp in (plain, filled):
        tmp.unlink(missing_ok=True)
    return out


def _tune_on_device(ctx: ExportContext, groups: list[int], fill: Any, what: str) -> tuple[Path, dict[str, Any]] | None:
    """``--tune --remote``: the graph's filling variants, whole files, measured on the device
    (:func:`deploy.tuning.tune_filling`); ``fill(g, dst)`` writes the variant of ``g`` groups and returns how many
    layers it changed. None when there is no grouped convolution."""
    from deploy.targets.onnx.groups import divisors
    from deploy.tuning import tune_filling
    from hsnet.toolbox.progress import log

    if not groups:
        log(f"[deploy] onnx/{what} --tune: no grouped convolution, nothing to tune")
        return None

    def build(g: int) -> tuple[Path, int]:
        dst = ctx.work_dir / f"{what}-fill{g}.onnx"
        return dst, fill(g, dst)

    return tune_filling(divisors(max(groups)), build, ctx.options.tune_site, "onnxruntime", None, what=f"onnx/{what}")


def _max_abs(a: Path, b: Path, x: np.ndarray, batch: int | None) -> float:
    """The largest absolute difference of two graphs' outputs on ``x`` (in calls of ``batch``)."""
    ort = require("onnxruntime", "onnx", "running ONNX artifacts")
    sessions = [ort.InferenceSession(str(p), session_options(1), providers=["CPUExecutionProvider"]) for p in (a, b)]
    name = sessions[0].get_inputs()[0].name
    step = batch or 1
    worst = 0.0
    for i in range(0, len(x) - step + 1, step):
        feed = {name: np.ascontiguousarray(x[i : i + step], dtype=np.float32)}
        worst = max(worst, float(np.abs(sessions[0].run(None, feed)[0] - sessions[1].run(None, feed)[0]).max()))
    return worst


def _same_outputs(a: Path, b: Path, x: np.ndarray, batch: int | None) -> bool:
    """Bit-identical outputs on ``x`` (a NaN is never the same)."""
    return _max_abs(a, b, x, batch) == 0.0


def _sort_topologically(graph) -> None:  # noqa: ANN001 - onnx.GraphProto
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs (stable otherwise)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise DeployError("the fp16 graph has a cycle or a missing input; cannot order it")
        for n in ready:
            available.update(n.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


class OnnxArtifact(Artifact):
    """An ``.onnx`` file run by onnxruntime on the CPU.

    Input: float32 NCHW, normalized, named ``input``; output: float32 ``logits``. A fixed-batch graph takes
    exactly its batch (see :func:`deploy.parity.predict` for any number of images).
    """

    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)
    runtime: ClassVar[str] = "onnxruntime"

    def __init__(self, path: Path, session: Any, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        self.session = session
        self._input = session.get_inputs()[0]
        self._output = next((o for o in session.get_outputs() if o.name == OUTPUT_NAME), session.get_outputs()[0])

    @classmethod
    def load(cls, path: Path, *, threads: int | None = None) -> OnnxArtifact:
        from deploy.external_data import check_external_data

        ort = require("onnxruntime", "onnx", "running ONNX artifacts")
        check_external_data(path)  # before onnxruntime follows any path the file names
        try:
            session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise DeployError(f"{path}: not a loadable ONNX model ({first})") from None
        return cls(Path(path), session, threads=threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        spec = self.input_spec
        fits = x.ndim == len(spec.shape) and all(s in (-1, d) for s, d in zip(spec.shape, x.shape, strict=True))
        if x.dtype != np.float32 or not fits:
            raise DeployError(
                f"{self.path.name} takes float32 {_shape_text(spec.shape)} (NCHW, normalized); got {x.dtype} "
                f"{tuple(x.shape)}"
            )
        return np.asarray(self.raw(x), dtype=np.float32)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self._output.name], {self._input.name: x})
        return out

    @property
    def input_spec(self) -> InputSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in self._input.shape)
        meta = self.metadata()
        try:
            m = ModelMetadata.from_strings(meta)
            mean, std = m.mean, m.std
        except DeployError:
            mean = std = ()
        dtype = {"tensor(float)": "float32", "tensor(float16)": "float16"}.get(self._input.type, self._input.type)
        return InputSpec(shape=shape, layout="NCHW", dtype=dtype, mean=mean, std=std, extra={"name": self._input.name})

    @property
    def runtime_version(self) -> str:
        return self._version(package_version("onnxruntime"))

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def op_counts(self) -> dict[str, int]:
        onnx = require("onnx", "onnx", "inspecting ONNX artifacts")
        model = onnx.load(str(self.path), load_external_data=False)
        return dict(Counter(n.op_type for n in model.graph.node))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["outputs"] = [
            {"name": o.name, "shape": [d if isinstance(d, int) else -1 for d in o.shape], "type": o.type}
            for o in self.session.get_outputs()
        ]
        onnx = require("onnx", "onnx", "inspecting ONNX artifacts")
        model = onnx.load(str(self.path), load_external_data=False)
        info["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        info["producer"] = f"{model.producer_name} {model.producer_version}".strip()
        return info


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("N" if d == -1 else str(d) for d in shape) + ")"
