"""The onnx2tf route: the pipeline's simplified ONNX graph -> .tflite, in a worker process, never on the network.

:func:`convert_onnx` prepares a private working folder (a copy of the graph, because onnx2tf rewrites its input
in place; the sample file onnx2tf would otherwise download; the int8 calibration images in NHWC), runs
:mod:`deploy.targets.tflite.onnx2tf_worker` there with ``sys.executable``, and keeps the worker's very verbose output
in ``onnx2tf.log`` beside it. The log is printed (its last lines) only when the conversion fails.

Why a process of its own: onnx2tf ends with ``sys.exit`` on failure, prints thousands of lines (some from
TensorFlow's C++ side, which no Python redirect captures), and leaves Keras/TensorFlow state behind; a worker
also frees TensorFlow's memory when it ends and is killed cleanly on Ctrl-C.

No network: onnx2tf downloads ``calibration_image_sample_data_20x128x128x3_float32.npy`` from GitHub, even for
fp32, unless that file is in its working folder; the worker writes one there first. onnx2tf also runs the
``onnxsim`` *command* three times unless told not to, and silently mis-converts graphs (Ghost slices, ECA's
Conv1d) when that command is missing from ``PATH``. The pipeline hands over a graph onnxsim has already
simplified, so onnx2tf's own pass is skipped; when the pipeline's onnxsim failed, onnx2tf runs it, with the
folder of ``sys.executable`` (where pip puts the ``onnxsim`` script) first on ``PATH``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.errors import DeployError
from hsnet.toolbox.progress import log

__all__ = ["ConversionRecord", "convert_onnx", "log_tail"]

_WORKER = Path(__file__).with_name("onnx2tf_worker.py")
# Run the worker by path without putting its folder on sys.path (deploy/targets/onnx.py would shadow ``onnx``).
_RUNNER = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
_HEARTBEAT_S = 30.0
_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # written by the worker
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ConversionRecord:
    """What one converter run did.

    Attributes:
        converter: ``onnx2tf`` or ``litert-torch``.
        versions: versions of the converter and of what it ran on.
        timings: seconds per step (import, graph translation, one entry per precision written).
        log: the converter's full output (inside the export's work folder).
    """

    converter: str
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    log: Path | None = None


def convert_onnx(
    onnx_path: Path,
    outputs: dict[str, Path],
    *,
    work_dir: Path,
    calibration: np.ndarray | None = None,
    simplified: bool = True,
    name: str | None = None,
) -> ConversionRecord:
    """Convert ``onnx_path`` to one ``.tflite`` file per precision in ``outputs``.

    One onnx2tf translation serves every requested precision (each is one TFLiteConverter call).

    Args:
        onnx_path: an NCHW ONNX graph with one image input and one output.
        outputs: precision (``fp32``, ``fp16``, ``int8``) -> file to write.
        work_dir: folder for the private working folder and the log.
        calibration: float32 NCHW normalized real images, required for ``int8`` (at least one batch of the
            graph's fixed batch).
        simplified: the graph was simplified by onnxsim already (False: onnx2tf runs the onnxsim command).
        name: what error messages call the graph (default: the file name of ``onnx_path``).

    Raises:
        DeployError: bad calibration data, a missing ``onnxsim`` command, or a failed conversion (one line; the
            last lines of onnx2tf's log are printed first).
    """
    unknown = sorted(set(outputs) - {"fp32", "fp16", "int8"})
    if unknown or not outputs:
        raise DeployError(f"onnx2tf route: unknown precisions {unknown or 'none'}; valid: fp32, fp16, int8")
    folder = Path(tempfile.mkdtemp(prefix="onnx2tf-", dir=work_dir))
    shutil.copyfile(onnx_path, folder / "model.onnx")
    request: dict = {
        "onnx": "model.onnx",
        "outputs": {p: f"{p}.tflite" for p in outputs},
        "calibration": None,
        "simplify": not simplified,
        "result": "result.json",
    }
    if "int8" in outputs:
        request["calibration"] = "calibration_nhwc.npy"
        np.save(folder / "calibration_nhwc.npy", _nhwc_calibration(calibration))
    (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    if not simplified and shutil.which("onnxsim", path=env["PATH"]) is None:
        raise DeployError(
            "onnx2tf needs the onnxsim command when the graph is not simplified, and it is not on PATH "
            f"(looked in {scripts} first); install it with: pip install 'hsnet[onnx]'"
        )
    log_path = folder / "onnx2tf.log"
    start = time.perf_counter()
    code = _run_worker(folder, env, log_path)
    elapsed = time.perf_counter() - start
    result = _read_result(folder / "result.json")
    if code != 0 or not result.get("ok"):
        error = result.get("error") or f"the worker ended with exit status {code} before reporting"
        where = _failing_node(log_path)
        _show_log(log_path)
        raise DeployError(f"onnx2tf could not convert {name or onnx_path.name}{where}: {error}")
    for precision, dst in outputs.items():
        shutil.move(folder / request["outputs"][precision], dst)
    for bulky in ("model.onnx", "calibration_nhwc.npy", _SAMPLE_FILE):  # keep only the log and the request/result
        (folder / bulky).unlink(missing_ok=True)
    timings = {k: float(v) for k, v in result.get("timings", {}).items()}
    timings["total"] = round(elapsed, 3)
    return ConversionRecord("onnx2tf", result.get("versions", {}), timings, log_path)


def _nhwc_calibration(calibration: np.ndarray | None) -> np.ndarray:
    if calibration is None:
        raise DeployError("int8 needs calibration images; none were given")
    x = np.asarray(calibration)
    if x.dtype != np.float32 or x.ndim != 4 or len(x) == 0:
        raise DeployError(f"calibration images must be float32 NCHW (N, C, H, W); got {x.dtype} {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise DeployError("calibration images contain NaN or infinite values")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _run_worker(folder: Path, env: dict[str, str], log_path: Path) -> int:
    """Run the worker to completion; on any interruption (Ctrl-C included) kill it before re-raising."""
    command = [sys.executable, "-c", _RUNNER, str(_WORKER), "request.json"]
    with open(log_path, "wb") as out:
        # A session of its own: Ctrl-C reaches only this process, which then ends the worker itself.
        proc = subprocess.Popen(
            command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            start = time.perf_counter()
            while True:
                try:
                    return proc.wait(timeout=_HEARTBEAT_S)
                except subprocess.TimeoutExpired:
                    log(f"[deploy] onnx2tf: still converting ({time.perf_counter() - start:.0f} s)")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def log_tail(path: Path, lines: int = 40) -> list[str]:
    """The last ``lines`` non-empty lines of a converter log, without terminal colour codes."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    kept = [_ANSI.sub("", line).rstrip() for line in text.splitlines() if line.strip()]
    return kept[-lines:]


def _show_log(path: Path) -> None:
    tail = log_tail(path)
    if tail:
        log(f"[deploy] last {len(tail)} lines of the onnx2tf log:")
        for line in tail:
            log(f"    {line}")


def _failing_node(path: Path) -> str:
    """`` at node NAME`` when onnx2tf's log names the ONNX node it failed on."""
    try:
        text = _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""
    found = re.findall(r"ERROR:\s*onnx_op_name:\s*(\S+)", text)
    if not found:
        return ""
    name = found[-1]
    return f" at node {name[2:] if name.startswith('wa/') else name}"
