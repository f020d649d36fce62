"""Subprocess worker of the onnx2tf route: ONNX -> Keras graph (onnx2tf) -> .tflite (TFLiteConverter).

Run by :mod:`deploy.targets.tflite.onnx2tf` as ``python onnx2tf_worker.py REQUEST.json`` in a private working
folder, with stdout/stderr going to a log file. It is a stand-alone script (it imports neither ``hsnet`` nor
``deploy``, so that torch is not loaded a second time) and runs in its own process because onnx2tf prints
thousands of lines, calls ``sys.exit`` on failure, and leaves TensorFlow/Keras global state behind.

onnx2tf only translates the graph (``disable_model_save=True``): the TFLite files are written here with
TensorFlow's converter, builtin operators only (no Flex/SELECT_TF_OPS, which a mobile app would have to ship),
one converter call per requested precision. That skips onnx2tf's own writers, which save the Keras model to a
SavedModel (tens of seconds of Keras serialization), always write fp32 and fp16 files, write five int8 variants
(dynamic range, int16 activations...) and turn a failed int8 quantization into a warning.

The request (JSON):

* ``onnx``: the ONNX file (a private copy: onnx2tf rewrites its input in place);
* ``outputs``: precision (``fp32``/``fp16``/``int8``) -> .tflite path to write;
* ``calibration``: a ``.npy`` of float32 NHWC normalized images (int8 only);
* ``simplify``: let onnx2tf run the ``onnxsim`` command (only when the pipeline's own onnxsim failed);
* ``result``: the JSON file this worker writes: ``{"ok", "error", "versions", "timings", "input", "outputs"}``.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from pathlib import Path

#: The sample file onnx2tf loads from the working folder for its layout checks, downloading it when absent.
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    result: dict = {"ok": False, "error": None, "versions": {}, "timings": {}, "outputs": {}}
    try:
        _convert(request, result)
        result["ok"] = True
    except SystemExit as e:  # onnx2tf reports most failures by sys.exit(1) after printing ERROR lines
        result["error"] = f"onnx2tf stopped (exit status {e.code}); see its log"
    except Exception as e:  # noqa: BLE001 - any failure becomes the one-line error the parent raises
        traceback.print_exc()
        result["error"] = _one_line(e)
    Path(request["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


def _convert(request: dict, result: dict) -> None:
    import numpy as np

    start = time.perf_counter()
    import onnx2tf
    import tensorflow as tf

    result["versions"] = {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}
    result["timings"]["import"] = round(time.perf_counter() - start, 3)
    if not Path(SAMPLE_FILE).exists():
        # Seeded uniform noise in 0..1 (what onnx2tf expects): only used to check layout guesses numerically.
        rng = np.random.default_rng(0)
        np.save(SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))

    start = time.perf_counter()
    model = onnx2tf.convert(
        input_onnx_file_path=request["onnx"],
        output_folder_path="saved_model",
        output_signaturedefs=True,  # names like "/stem/conv/Conv" make onnx2tf exit otherwise
        disable_model_save=True,
        not_use_onnxsim=not request["simplify"],
        verbosity="info",
    )
    result["timings"]["onnx2tf"] = round(time.perf_counter() - start, 3)
    if model is None or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise RuntimeError("onnx2tf returned no model with one input and one output")
    spec = model.inputs[0]
    result["input"] = {"shape": [-1 if d is None else int(d) for d in spec.shape], "dtype": spec.dtype.name}

    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec(spec.shape, spec.dtype, "input")])
    concrete = fn.get_concrete_function()
    calibration = None
    if request.get("calibration"):
        calibration = np.load(request["calibration"], allow_pickle=False)
    for precision, out in request["outputs"].items():
        start = time.perf_counter()
        # No trackable object: onnx2tf stores weights as constants, and handing the Keras model over makes the
        # converter serialize it first (25 s of 27 for GhostNet at 32x32, every precision).
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "fp16":
            # float16 weights, float32 input/output and arithmetic where the runtime has no fp16 kernels
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            if calibration is None:
                raise RuntimeError("int8 needs calibration images")
            batch = spec.shape[0] or 1
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = _representative(calibration, batch)
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif precision != "fp32":
            raise RuntimeError(f"unknown precision {precision!r}")
        Path(out).write_bytes(converter.convert())
        result["outputs"][precision] = out
        result["timings"][precision] = round(time.perf_counter() - start, 3)


def _representative(calibration, batch: int):  # noqa: ANN001, ANN202 - numpy/TF are imported lazily
    """Calibration images in calls of the model's batch (the last partial call is dropped)."""

    def gen():  # noqa: ANN202
        for i in range(0, len(calibration) - batch + 1, batch):
            yield [calibration[i : i + batch]]

    return gen


def _one_line(e: BaseException) -> str:
    text = str(e)
    # TensorFlow's converter lists every operation the TFLite builtins lack, one error line each.
    missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    if missing:
        return f"the TFLite builtin operators lack {', '.join(missing)}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


if __name__ == "__main__":
    sys.exit(main(sys.argv[-1]))
