"""The litert-torch route: the prepared PyTorch model -> .tflite directly (no ONNX, no TensorFlow).

* fp32: ``litert_torch.convert`` of the model wrapped by ``litert_torch.to_channel_last_io`` (NHWC input, like
  the onnx2tf route), traced at the export's fixed batch.
* fp16 and int8: ai-edge-quantizer applied to that fp32 flatbuffer: float16 weights by its ``float_casting``
  weight-only recipe (float32 input/output and arithmetic), and full-integer int8 by its static ``wi8_ai8`` recipe
  calibrated on the real images (int8 input and output, like the onnx2tf route). litert-torch's own PT2E int8
  is not used: it gives the sigmoid an output scale that TFLite's builtin int8 kernel rejects (the model then
  runs only under XNNPACK).

It runs in this process (the model is a live ``nn.Module``); litert-torch's and the quantizer's progress output
goes to the log file, shown only when the conversion fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deploy.deps import require
from deploy.errors import DeployError
from deploy.targets.tflite.onnx2tf import ConversionRecord, log_tail
from hsnet.toolbox.machine import package_version
from hsnet.toolbox.progress import log

__all__ = ["EXTRA", "convert_torch"]

#: The pip extra that provides litert-torch and ai-edge-quantizer.
EXTRA = "litert-torch"


def convert_torch(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    outputs: dict[str, Path],
    *,
    work_dir: Path,
    calibration: np.ndarray | None = None,
) -> ConversionRecord:
    """Convert ``model`` (eval mode, NCHW input of ``input_shape``) to one ``.tflite`` per precision in ``outputs``.

    Raises:
        MissingDependencyError: litert-torch or ai-edge-quantizer is not installed (names the extra).
        DeployError: the conversion or quantization fails (one line; the log's last lines are printed first).
    """
    log_path = work_dir / "litert-torch.log"
    timings: dict[str, float] = {}
    fp32 = work_dir / "litert_fp32.tflite"
    try:
        with open(log_path, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):  # fmt: skip
            # Imported here so that their import-time warnings (torchao, jax) go to the log too.
            litert_torch = require("litert_torch", EXTRA, "the litert-torch TFLite converter")
            if set(outputs) - {"fp32"}:
                require("ai_edge_quantizer", EXTRA, "fp16/int8 with the litert-torch converter")
            start = time.perf_counter()
            n, c, h, w = input_shape
            nhwc = litert_torch.to_channel_last_io(model.eval(), args=[0])
            edge = litert_torch.convert(nhwc, (torch.zeros(n, h, w, c),))
            edge.export(str(fp32))
            timings["fp32"] = round(time.perf_counter() - start, 3)
            for precision, dst in outputs.items():
                start = time.perf_counter()
                if precision == "fp32":
                    shutil.copyfile(fp32, dst)
                    continue
                dst.write_bytes(_quantize(fp32, precision, calibration, n))
                timings[precision] = round(time.perf_counter() - start, 3)
    except DeployError:
        raise
    except Exception as e:  # noqa: BLE001 - any converter/quantizer failure becomes one clear line
        tail = log_tail(log_path)
        if tail:
            log(f"[deploy] last {len(tail)} lines of the litert-torch log:")
            for line in tail:
                log(f"    {line}")
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise DeployError(f"litert-torch could not convert the model: {type(e).__name__}: {first}") from None
    versions = {d: package_version(d) for d in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch")}
    return ConversionRecord("litert-torch", versions, timings, log_path)


def _quantize(fp32: Path, precision: str, calibration: np.ndarray | None, batch: int) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if precision == "fp16":
        q = quantizer.Quantizer(str(fp32))
        q.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
        return bytes(q.quantize().quantized_model)
    if precision != "int8":
        raise DeployError(f"litert-torch route: unknown precision {precision!r}; valid: fp32, fp16, int8")
    if calibration is None or len(calibration) < batch:
        raise DeployError(f"int8 needs at least {batch} calibration images")
    interpreter = require("ai_edge_litert.interpreter", "tflite", "int8 calibration").Interpreter(str(fp32))
    signatures = interpreter.get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    x = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32).transpose(0, 2, 3, 1))
    samples = [{name: x[i : i + batch]} for i in range(0, len(x) - batch + 1, batch)]
    q = quantizer.Quantizer(str(fp32), recipe.static_wi8_ai8())
    result = q.calibrate({key: samples}, num_threads=max(1, min(4, os.cpu_count() or 1)))
    return bytes(q.quantize(result).quantized_model)
