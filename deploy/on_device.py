"""Parity on a device's own kernels: an artifact whose raw calls run on a device (``deploy verify --remote``).

The artifact is loaded here as usual (so its input layout, dtype and int8 quantization are applied here, exactly
as for a local check); each raw call (:meth:`deploy.artifact.Artifact.raw`) is sent to a worker on the device
(:mod:`hsnet.devices`), which runs it in the device's runtime and sends the raw output back. The parity figures
then say which runtime on which device answered.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from deploy.artifact import Artifact
from hsnet.devices.handle import WorkerFailed
from hsnet.devices.remote import parse_device
from hsnet.devices.session import device_text, open_worker
from hsnet.errors import HSNetError, ToolFailure
from hsnet.toolbox.progress import log as _log

__all__ = ["on_device"]

#: The worker's runtime for each artifact format that runs on devices.
_RUNTIMES = {".onnx": "onnxruntime", ".tflite": "tflite"}
_CALL_TIMEOUT_S = 900.0  # one raw call of a batch under emulation can take minutes


@contextlib.contextmanager
def on_device(
    artifact: Artifact,
    remote: str,
    *,
    ssh_options: Sequence[str] = (),
    ssh_config: str | None = None,
    log: Callable[[str], None] = _log,
) -> Iterator[Artifact]:
    """``artifact`` with its raw calls on the device ``remote`` while the context lasts (the worker is stopped
    at the end, also on an error or Ctrl-C).

    Raises:
        HSNetError: a malformed remote, or a format that does not run on devices (exit 2).
        ToolFailure: the device cannot be reached, lacks the runtime, or fails a call (exit 3), naming it.
    """
    device = parse_device(remote, ssh_options=ssh_options, ssh_config=ssh_config)
    runtime = _RUNTIMES.get(artifact.path.suffix.lower())
    if runtime is None:
        raise HSNetError(f"{artifact.path.name}: only .onnx and .tflite artifacts run on devices")
    worker, info = open_worker(device, artifact.path, runtime, threads=artifact.threads or 1, log=log)
    version = f"{str(worker.ready.get('runtime_version')).split()[-1]} on {device_text(info)}"
    log(f"{device.name}: {artifact.path.name} runs there ({version})")

    def raw(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        cmd = {"cmd": "invoke", "shape": list(x.shape), "dtype": x.dtype.name,
               "data": base64.b64encode(x.tobytes()).decode("ascii")}  # fmt: skip
        try:
            reply = worker.request(cmd, _CALL_TIMEOUT_S)
        except WorkerFailed as e:
            raise ToolFailure(f"{device.name}: the call failed there ({e})") from None
        out = np.frombuffer(base64.b64decode(reply["data"]), dtype=reply["dtype"])
        return out.reshape(reply["shape"])

    artifact.run_on(raw, version)
    try:
        yield artifact
    finally:
        artifact.run_here()
        worker.close()
