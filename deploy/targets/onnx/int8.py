"""ONNX int8: static QDQ quantization calibrated on real images, then an exact rewrite that makes onnxruntime run
grouped convolutions fast.

**Quantization** (:func:`quantize_qdq`): onnxruntime's ``quantize_static`` in QDQ format with uint8 activations
(asymmetric, MinMax over the calibration images) and int8 weights per output channel (symmetric: every weight zero
point is 0); input and output stay float32. onnxruntime's CPU provider fuses each ``DequantizeLinear -> Conv ->
QuantizeLinear`` into a ``QLinearConv`` for this u8s8 form; with int8 activations (s8s8) most convolutions stayed
float ``Conv`` between dequantize and quantize nodes here (HSNet at 224: 12.5 of 19.8 ms in float ``Conv``).

**Filling grouped convolutions** (:func:`fill_grouped_convs`): a grouped ``QLinearConv`` (neither one group nor
depthwise) is slow in onnxruntime; the rewrite merges neighbouring groups into one by writing the quantized
weights block-diagonally, zeros elsewhere. The weight zero point is 0, so an int8 zero is an exact 0: the int32
accumulations gain only ``x * 0`` terms and the per-channel scales and biases are unchanged, so the output equals
the plain QDQ model's. The export checks that it is bit-identical on the parity images and keeps the plain model
where it is not: onnxruntime's u8s8 products can overflow their int16 intermediate sums on x86 CPUs without
VNNI (its change #12088), and the zeros can change which sums saturate. HSNet at 224 on an Intel Xeon,
one interleaved run: fp32 13.7 ms, plain QDQ 15.2 ms, filled to 1 group 9.4 ms (docs/deploy.md).

**How far** depends on the CPU family the file is for (:data:`FILL_GROUPS`, ``--arch``): on x86-64 one group
(HSNet 224: 0.66x of fp32's time in two bench runs, plain QDQ 1.11-1.15x); on aarch64 four, what the emulated
Cortex-A76 and A53 counted fewest instructions for across both cores (HSNet 224, guest instructions per inference:
A76 plain 215.6 M, 4 groups 159.5 M, 2 groups 149.2 M, 1 group 172.2 M; A53 plain 261.5 M, 4 groups 221.2 M,
2 groups 245.9 M, 1 group 380.4 M).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deploy.deps import require
from deploy.errors import DeployError
from deploy.targets.onnx.groups import divisors, input_uses, regroup

__all__ = ["FILL_GROUPS", "fill_grouped_convs", "grouped_convs", "quantize_qdq"]

#: The group count grouped convolutions are filled to, per CPU family (another family: not filled).
FILL_GROUPS: dict[str, int] = {"x86_64": 1, "aarch64": 4}


def quantize_qdq(src: Path, dst: Path, calibration: np.ndarray, *, batch: int | None) -> Path:
    """Quantize ONNX ``src`` to static QDQ (u8 activations, s8 per-channel weights) at ``dst``, calibrated on
    ``calibration`` (float32 NCHW, normalized), ``batch`` images per call (``None``: symmetric batch, 1 per call).

    Raises:
        DeployError: no calibration images, or onnxruntime's quantizer failed (its reason, one line).
    """
    require("onnx", "onnx", "ONNX int8")
    q = require("onnxruntime.quantization", "onnx", "ONNX int8")
    if calibration is None or len(calibration) == 0:
        raise DeployError("ONNX int8 needs calibration images (--images or --calibration); none were given")
    step = batch or 1
    name = _input_name(src)

    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = (
                {name: _pad(calibration[i : i + step], step)} for i in range(0, len(calibration), step)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" notices
    try:
        q.quantize_static(
            str(src), str(dst), _Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the quantizer raises many types; the stage failed either way
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DeployError(f"onnxruntime could not quantize {src.name} to int8: {first}") from None
    finally:
        root.setLevel(level)
    return Path(dst)


def _input_name(path: Path) -> str:
    onnx = require("onnx", "onnx", "ONNX int8")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


def _pad(chunk: np.ndarray, step: int) -> np.ndarray:
    chunk = np.ascontiguousarray(chunk, dtype=np.float32)
    if len(chunk) < step:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
    return chunk


def grouped_convs(model: Any) -> list[dict[str, Any]]:
    """The QDQ ``Conv`` nodes of ``model`` (an ``onnx.ModelProto``) with groups that are neither 1 nor depthwise:
    ``node``, its weight ``dq`` node and ``weight`` initializer, ``groups``, ``per_group`` input channels."""
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        dq = producers.get(node.input[1])
        if groups <= 1 or dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        weight = inits[dq.input[0]]
        per_group = int(weight.dims[1])
        if per_group > 1:  # per_group == 1 is depthwise: a kernel of its own, fast as it is
            found.append({"node": node, "dq": dq, "weight": weight, "groups": groups, "per_group": per_group})
    return found


def fill_grouped_convs(
    src: Path, dst: Path, *, target_groups: int = 1, per_layer: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Rewrite every grouped QDQ convolution of ``src`` (:func:`grouped_convs`) to ``target_groups`` groups (the
    largest divisor of its groups not above it), or to ``per_layer[name]`` groups where given (``--tune``'s
    choices; a layer it does not name keeps its groups), with block-diagonal int8 weights; write ``dst`` (checked).

    Returns:
        One record per rewritten layer: ``name``, ``groups_before``, ``groups_after``.
    """
    onnx = require("onnx", "onnx", "ONNX int8")
    from onnx import numpy_helper

    from deploy.onnx_export import check_onnx

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    uses = input_uses(model)
    changed = []
    for conv in grouped_convs(model):
        node, dq, weight, groups = conv["node"], conv["dq"], conv["weight"], conv["groups"]
        want = (per_layer or {}).get(node.name, groups) if per_layer is not None else target_groups
        after = next(d for d in divisors(groups) if d <= max(want, 1))
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
        if after == groups or uses.get(dq.input[0], 0) != 1 or (zero is not None and np.any(zero != 0)):
            continue  # nothing to merge, a shared weight, or a zero point that would make zeros inexact
        regroup(node, weight, groups, after)  # int8 zeros: exact zeros (zero point 0)
        changed.append({"name": node.name, "groups_before": groups, "groups_after": after})
    onnx.save(model, str(dst))
    check_onnx(Path(dst))
    return changed
