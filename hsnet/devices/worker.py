"""The measuring worker: one process per (runtime, artifact, threads) configuration, driven over JSON lines.

This module is deliberately self-contained: it imports only the standard library, numpy and the one runtime it
measures (torch, onnxruntime, ai_edge_litert / tflite_runtime, coremltools), never :mod:`hsnet`, :mod:`deploy` or
the rest of :mod:`benchmarks`. Copy this single file to a remote device (a phone, an ARM board) and run it there
by path; the parent only needs to speak the protocol below.

Run::

    python worker.py '{"runtime": "onnxruntime", "artifact": "m.onnx", "threads": 1}'
    python -m hsnet.devices.worker @job.json           # a job file instead of inline JSON

Protocol (one JSON object per line): the job is given on the command line, so that thread variables are in the
environment before numpy or the runtime is imported. The worker loads the artifact and runs it once (cold start),
warms up, then prints ``{"event": "ready", ...}`` and waits for commands on stdin:

- ``{"cmd": "run", "n": N, "warmup": W}``: W untimed calls, then N timed calls; reply ``{"event": "samples",
  "t": [wall seconds...], "c": [process CPU seconds...], "v": [involuntary context switches...], "cpu_s": ...,
  "wall_s": ...}`` (one entry per call). ``cpu_s / wall_s`` is how many cores the runtime really used (the check
  that the thread setting is enforced).
- ``{"cmd": "overhead", "n": N}``: N timed calls of an empty function through the same timing loop; reply
  ``{"event": "overhead", "t": [...]}``.
- ``{"cmd": "ops", "n": N, "warmup": W}``: the runtime's own per-operator profile of N calls (after W) in a
  second session; reply ``{"event": "ops", "available": true, "runs": N, "run_us": ..., "nodes": {name: {"op",
  "inputs": [shapes], "us": mean per call}}}``, or ``{"event": "ops", "available": false, "reason": ...}``.
- ``{"cmd": "count", "n": N, "warmup": W}``: on the emulated device only (its TCG plugin, loaded when
  ``HSNET_INSN_FILE`` is set, see ``hsnet/devices/emulated/insn_count.c``): W uncounted calls, then N calls each
  bracketed by the plugin's marker system calls; reply ``{"event": "counts", "calls": [{"insns": ..., "fmla": ...,
  "sdot": ..., "i8mm": ..., "fp16": ..., "sve": ..., "sme": ...}, ...]}`` (guest instructions per call).
- ``{"cmd": "invoke", "shape": [...], "dtype": "float32", "data": BASE64}`` (onnxruntime and tflite): one call on
  that raw input tensor, in the artifact's own layout and dtype (the caller adapts: ``deploy verify --remote``);
  reply ``{"event": "output", "shape": [...], "dtype": ..., "data": BASE64}``, the raw first output.
- ``{"cmd": "stats"}``: reply ``{"event": "stats", "peak_rss_bytes": ..., "os_threads": ...}``.
- ``{"cmd": "quit"}``: exit 0.

Failures are replies, not tracebacks: ``{"event": "error", "phase": "import|load|run", "message": ...}``;
``{"event": "skipped", "reason": ...}`` when the runtime is not installed (``reason`` names the extra).
The protocol channel is a private duplicate of stdout; file descriptor 1 is pointed at stderr so that runtimes
printing from C code cannot corrupt it.

Job fields: ``runtime`` (``torch``, ``onnxruntime``, ``tflite``, ``coreml``, or the built-in numpy workloads
``reference`` and ``gemm``), ``artifact`` (path), ``threads`` (int), ``batch`` (used for dynamic or unknown input
shapes), ``input_shape`` (NCHW, required for ``torch``), ``pin`` (list of CPU ids or null), ``warmup_runs``,
``warmup_s``, ``inject_delay_s`` (a busy wait added inside every timed call: the gate's proof uses it as a real,
calibrated slowdown), ``inject_loop`` (N iterations of an empty Python loop added inside every call: a slowdown
of a fixed number of instructions, for the proof of the instruction-count gate), ``seed``, ``watch_stdin`` (exit
at once when the parent's end of stdin goes away, even in the middle of a call: a worker on a device over SSH must
not outlive a dropped connection).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

try:
    import resource
except ImportError:  # Windows: no rusage; peak RSS and preemption counts read 0
    resource = None  # type: ignore[assignment]

PROTOCOL_VERSION = 1

# Every threading knob we know of; set before numpy or a runtime is imported (they read them once, at import).
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)
INTEROP_ENV = ("TF_NUM_INTEROP_THREADS",)

# What to install for each runtime, named in ``skipped`` replies (torch is a core dependency of hsnet).
EXTRAS = {
    "torch": "install hsnet, which requires torch>=2.4,<2.14 (a newer torch pulls a CUDA build)",
    "onnxruntime": "install hsnet[onnx]",
    "tflite": "install hsnet[tflite]",
    "coreml": "install hsnet[coreml]",
}


class Skip(Exception):
    """The runtime is not installed (or cannot run on this OS); becomes a ``skipped`` reply."""


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that cap every threading library at ``threads`` (inter-op pools at 1)."""
    env = {k: str(threads) for k in THREAD_ENV}
    env.update({k: "1" for k in INTEROP_ENV})
    return env


# ---------------------------------------------------------------------------------------------- runtimes


def _input_array(np: Any, shape: list[int], dtype: str, seed: int) -> Any:
    """Deterministic input data of ``shape``/``dtype`` (latency of these CNNs does not depend on the values)."""
    rng = np.random.default_rng(seed)
    if dtype in ("int8", "uint8", "int16", "int32"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _ort_session(job: dict[str, Any], profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(job["threads"])
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the other workers' cores on a shared machine and hide contention; turn them off.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(job["artifact"], so, providers=["CPUExecutionProvider"])


def _ort_feed(sess: Any, job: dict[str, Any], np: Any) -> tuple[dict[str, Any], list[int], str]:
    inp = sess.get_inputs()[0]
    dtype = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(int8)": "int8",
        "tensor(uint8)": "uint8",
    }.get(inp.type)
    if dtype is None:
        raise RuntimeError(f"input {inp.name!r} has type {inp.type}, which the runner cannot feed")
    shape = _resolve_shape([d if isinstance(d, int) else None for d in inp.shape], job)
    return {inp.name: _input_array(np, shape, dtype, job.get("seed", 0))}, shape, dtype


def _load_onnxruntime(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise Skip(f"onnxruntime is not installed: {EXTRAS['onnxruntime']}") from None
    threads = int(job["threads"])
    t0 = time.perf_counter()
    sess = _ort_session(job)
    load_s = time.perf_counter() - t0
    feed, shape, dtype = _ort_feed(sess, job, np)
    run = sess.run
    name = sess.get_inputs()[0].name

    def call() -> Any:
        return run(None, feed)

    def invoke(x: Any) -> Any:
        return run(None, {name: x})[0]

    info = {
        "invoke": invoke,
        "runtime_version": ort.__version__,
        "input_shape": shape,
        "input_dtype": dtype,
        "load_s": load_s,
        "threads_set": {"intra_op": threads, "inter_op": 1, "allow_spinning": 0},
    }
    return call, info


def _profile_onnxruntime(job: dict[str, Any], np: Any, n: int, warmup: int) -> dict[str, Any]:
    """Per-node kernel time of ``n`` calls from onnxruntime's own profiler (a second session of the same
    options), after ``warmup`` calls that are left out. Nodes are the optimized graph's (fused, NCHWc reorders
    included), each with its operator, input shapes and mean microseconds per call."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hsnet-ops-") as tmp:
        sess = _ort_session(job, profile_prefix=os.path.join(tmp, "profile"))
        feed = _ort_feed(sess, job, np)[0]
        for _ in range(warmup + n):
            sess.run(None, feed)
        with open(sess.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[-n:]
    if len(runs) < n:
        raise RuntimeError(f"the profile holds {len(runs)} runs, not {n}")
    start = runs[0]["ts"]
    nodes: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or e["ts"] < start:
            continue
        args = e.get("args", {})
        entry = nodes.setdefault(name[: -len("_kernel_time")], {
            "op": args.get("op_name", "?"),
            "inputs": [next(iter(d.values())) for d in args.get("input_type_shape", [])],
            "us": 0.0,
        })  # fmt: skip
        entry["us"] += e["dur"]
    for entry in nodes.values():
        entry["us"] /= n
    return {"runs": n, "run_us": sum(r["dur"] for r in runs) / n, "nodes": nodes}


#: Per-operator profilers by runtime; the others answer "not available" with the reason.
_PROFILERS: dict[str, Callable[..., dict[str, Any]]] = {"onnxruntime": _profile_onnxruntime}
_NO_PROFILER = {
    "tflite": "LiteRT's Python interpreter has no per-operator profiler (its C++ benchmark tool has one)",
    "torch": "not wired up for the torch.export program (torch.profiler names ATen calls, not the graph's layers)",
    "coreml": "CoreML prediction runs on macOS only",
}


def _load_tflite(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        name = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter

            name = "tflite-runtime"
        except ImportError:
            raise Skip(f"no TFLite runtime (ai_edge_litert) is installed: {EXTRAS['tflite']}") from None
    threads = int(job["threads"])
    t0 = time.perf_counter()
    interp = Interpreter(model_path=job["artifact"], num_threads=threads)
    interp.allocate_tensors()
    load_s = time.perf_counter() - t0
    det = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    shape = [int(d) for d in det["shape"]]
    dtype = np.dtype(det["dtype"]).name
    x = _input_array(np, shape, dtype, job.get("seed", 0))
    in_index = det["index"]
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor

    def call() -> Any:
        # What an application pays per inference from Python: copy in, run, copy out.
        set_tensor(in_index, x)
        invoke()
        return get_tensor(out_index)

    def invoke_on(given: Any) -> Any:
        if list(given.shape) != [int(d) for d in interp.get_input_details()[0]["shape"]]:
            interp.resize_tensor_input(in_index, list(given.shape))  # a dynamic batch
            interp.allocate_tensors()
        set_tensor(in_index, given)
        invoke()
        return get_tensor(out_index)

    info = {
        "invoke": invoke_on,
        "runtime_version": f"{name} {_dist_version(name)}",
        "input_shape": shape,
        "input_dtype": dtype,
        "load_s": load_s,
        "threads_set": {"num_threads": threads},
    }
    return call, info


def _load_torch(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    try:
        import torch
    except ImportError:
        raise Skip(f"torch is not installed: {EXTRAS['torch']}") from None
    threads = int(job["threads"])
    torch.set_num_threads(threads)
    # Raises only if already set, which cannot happen in a fresh worker; the row records what is in effect.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    if "input_shape" not in job:
        raise RuntimeError("the torch runtime needs input_shape in the job (a .pt2 file does not record it)")
    t0 = time.perf_counter()
    # A torch.export program (.pt2): the reparameterized model without the Python source that defined it.
    # torch.export.load only rebuilds a graph of ATen operators; it does not unpickle arbitrary code.
    module = torch.export.load(job["artifact"]).module()
    load_s = time.perf_counter() - t0
    shape = _resolve_shape(list(job["input_shape"]), job)
    x = torch.from_numpy(_input_array(np, shape, "float32", job.get("seed", 0)))
    mode = torch.inference_mode()
    mode.__enter__()  # stays on for the life of the worker: no autograd bookkeeping in the timed calls

    def call() -> Any:
        return module(x)

    info = {
        "runtime_version": torch.__version__,
        "input_shape": shape,
        "input_dtype": "float32",
        "load_s": load_s,
        "threads_set": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
    }
    return call, info


def _load_coreml(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    if platform.system() != "Darwin":
        raise Skip("CoreML prediction needs macOS")
    try:
        import coremltools as ct
    except ImportError:
        raise Skip(f"coremltools is not installed: {EXTRAS['coreml']}") from None
    # Not exercised on Linux (prediction is macOS only); written from coremltools' documented API.
    t0 = time.perf_counter()
    model = ct.models.MLModel(job["artifact"], compute_units=ct.ComputeUnit.CPU_ONLY)
    load_s = time.perf_counter() - t0
    spec = model.get_spec()
    inp = spec.description.input[0]
    if inp.type.WhichOneof("Type") == "imageType":
        from PIL import Image

        side_h, side_w = inp.type.imageType.height, inp.type.imageType.width
        pixels = _input_array(np, [side_h, side_w, 3], "float32", job.get("seed", 0))
        feed = {inp.name: Image.fromarray((np.clip(pixels, -2, 2) * 60 + 128).astype("uint8"), "RGB")}
        shape = [1, 3, side_h, side_w]
    else:
        shape = _resolve_shape([int(d) for d in inp.type.multiArrayType.shape], job)
        feed = {inp.name: _input_array(np, shape, "float32", job.get("seed", 0))}
    predict = model.predict

    def call() -> Any:
        return predict(feed)

    info = {
        "runtime_version": f"coremltools {ct.__version__}",
        "input_shape": shape,
        "input_dtype": "image",
        "load_s": load_s,
        "threads_set": {"compute_units": "CPU_ONLY"},
    }
    return call, info


def _load_reference(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    """A fixed numpy workload shaped like a small CNN: the 1x1 convolutions of a MobileNet as im2col GEMMs, each
    followed by a ReLU (about 360 M MACs, ~8 ms on one 2020s x86 core).

    It depends on no project code, so it measures only how fast this machine is right now: the gate divides each
    model's time by the reference time measured in the same round. Of the variants tried (see
    docs/benchmarking.md), this one tracked the models' slow-downs under contention best.
    """
    rng = np.random.default_rng(0)
    scale = float(job.get("reference_scale", 4.0))
    # (pixels, c_in, c_out) at 112..7 px for scale 1; scale multiplies the pixels (the work, not the weights).
    base = [
        (3136, 32, 64),
        (784, 64, 128),
        (784, 128, 128),
        (196, 128, 256),
        (196, 256, 256),
        (49, 256, 512),
        (49, 512, 512),
        (49, 512, 1024),
    ]
    layers = [(max(int(p * scale), 1), ci, co) for p, ci, co in base]
    acts = [rng.standard_normal((p, ci)).astype("float32") for p, ci, _ in layers]
    weights = [rng.standard_normal((ci, co)).astype("float32") * 0.05 for _, ci, co in layers]
    outs = [np.empty((a.shape[0], w.shape[1]), "float32") for a, w in zip(acts, weights, strict=True)]
    pairs = list(zip(acts, weights, outs, strict=True))
    matmul, maximum = np.matmul, np.maximum

    def call() -> Any:
        for a, w, o in pairs:
            matmul(a, w, out=o)
            maximum(o, 0.0, out=o)
        return outs[-1]

    macs = sum(p * ci * co for p, ci, co in layers)
    info = {
        "runtime_version": f"numpy {np.__version__}",
        "input_shape": [],
        "input_dtype": "float32",
        "load_s": 0.0,
        "macs": macs,
        "threads_set": {"blas_env": os.environ.get("OPENBLAS_NUM_THREADS")},
    }
    return call, info


def _load_gemm(job: dict[str, Any], np: Any) -> tuple[Callable[[], Any], dict[str, Any]]:
    """A square float32 matmul (numpy's BLAS, or torch.mm when ``gemm_backend`` is ``torch``): this machine's peak."""
    n = int(job.get("gemm_size", 1024))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype("float32")
    b = rng.standard_normal((n, n)).astype("float32")
    if job.get("gemm_backend", "numpy") == "torch":
        try:
            import torch
        except ImportError:
            raise Skip("torch is not installed") from None
        torch.set_num_threads(int(job["threads"]))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out = torch.empty((n, n))

        def call() -> Any:
            return torch.mm(ta, tb, out=out)

        version = f"torch {torch.__version__}"
    else:
        out = np.empty((n, n), "float32")

        def call() -> Any:
            return np.matmul(a, b, out=out)

        version = f"numpy {np.__version__}"
    info = {
        "runtime_version": version,
        "input_shape": [n, n],
        "input_dtype": "float32",
        "load_s": 0.0,
        "macs": n * n * n,
        "threads_set": {"threads": int(job["threads"])},
    }
    return call, info


LOADERS = {
    "torch": _load_torch,
    "onnxruntime": _load_onnxruntime,
    "tflite": _load_tflite,
    "coreml": _load_coreml,
    "reference": _load_reference,
    "gemm": _load_gemm,
}


def _resolve_shape(shape: list[int | None], job: dict[str, Any]) -> list[int]:
    """Fill a dynamic batch dimension with the job's batch; any other unknown dimension is an error."""
    out = list(shape)
    if out and (out[0] is None or out[0] < 1):
        out[0] = int(job.get("batch", 1))
    if any(d is None or d < 1 for d in out):
        raise RuntimeError(f"input shape {shape} has unknown dimensions besides the batch")
    return [int(d) for d in out]


def _dist_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - a version is informative only
        return "unknown"


# ---------------------------------------------------------------------------------------------- measuring


def timed_calls(call: Callable[[], Any], n: int, delay_s: float = 0.0) -> tuple[list[float], list[float], list[int]]:
    """Time ``n`` calls of ``call`` one by one.

    Returns per call: wall seconds, process CPU seconds, and how many times the OS preempted the process during the
    call (involuntary context switches). CPU time and switches are read outside the wall-clock pair, so they never
    inflate the latency; they tell a call slowed by another tenant from a call that is really slower.
    ``delay_s`` adds that much CPU work (a busy wait) inside the timed region: the injected slowdown of the gate's
    proof, which like an extra layer costs the same CPU time however busy the machine is.
    """
    pc, pt = time.perf_counter, time.process_time
    usage = _switches
    wall: list[float] = []
    cpu: list[float] = []
    switches: list[int] = []
    for _ in range(n):
        v0 = usage()
        c0 = pt()
        t0 = pc()
        call()
        if delay_s > 0:
            end = pt() + delay_s
            while pt() < end:
                pass
        t1 = pc()
        c1 = pt()
        v1 = usage()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
        switches.append(v1 - v0)
    return wall, cpu, switches


def _switches() -> int:
    """Involuntary context switches of this process so far (0 where the OS does not count them)."""
    return 0 if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def _peak_rss_bytes() -> int:
    """High-water resident memory of this process.

    ``VmHWM`` of /proc/self/status where it exists: ``ru_maxrss`` would report the parent's peak, because Linux
    carries the high-water mark of the forked parent across ``exec``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _os_threads() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


class Worker:
    """One loaded configuration answering protocol commands."""

    def __init__(self, job: dict[str, Any], out: Any) -> None:
        self.job = job
        self.out = out
        self.call: Callable[[], Any] | None = None
        self.delay_s = float(job.get("inject_delay_s", 0.0))
        self.counts: Any = None  # the emulator plugin's count file, once opened
        self.invoke: Callable[[Any], Any] | None = None  # one call on a given raw input (not every runtime)

    def send(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def start(self) -> bool:
        """Import, load, first call, warm-up; sends ``ready``, ``skipped`` or ``error``. True when ready."""
        job = self.job
        phase = "import"
        try:
            pin = job.get("pin")
            if pin:
                os.sched_setaffinity(0, {int(c) for c in pin})
            t0 = time.perf_counter()
            import numpy as np

            loader = LOADERS.get(job.get("runtime", ""))
            if loader is None:
                raise RuntimeError(f"unknown runtime {job.get('runtime')!r}; valid: {', '.join(LOADERS)}")
            phase = "load"
            rss_before = _peak_rss_bytes()
            call, info = loader(job, np)
            self.invoke = info.pop("invoke", None)
            loop = int(job.get("inject_loop", 0))
            if loop > 0:
                call = _with_loop(call, loop)
            import_s = time.perf_counter() - t0 - info["load_s"]
            phase = "run"
            t1 = time.perf_counter()
            call()
            first_s = time.perf_counter() - t1
            warm = timed_calls(call, max(int(job.get("warmup_runs", 3)), 1))[0]
            deadline = time.perf_counter() + float(job.get("warmup_s", 0.2))
            while time.perf_counter() < deadline:
                warm += timed_calls(call, 1)[0]
        except Skip as e:
            self.send({"event": "skipped", "reason": str(e)})
            return False
        except Exception as e:  # noqa: BLE001 - every failure becomes a status row in the parent
            msg = " ".join(str(e).split()) or type(e).__name__
            self.send({"event": "error", "phase": phase, "message": f"{type(e).__name__}: {msg}"[:500]})
            return False
        self.call = call
        self.send(
            {
                "event": "ready",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "runtime": job["runtime"],
                **info,
                "import_s": import_s,
                "first_s": first_s,
                "warmup_t": warm,
                "rss_before_load_bytes": rss_before,
                "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "env_threads": {k: os.environ.get(k) for k in THREAD_ENV},
                "python": platform.python_version(),
                "numpy": np.__version__,
            }
        )
        return True

    def _invoke(self, cmd: dict[str, Any]) -> None:
        import base64

        import numpy as np

        if self.invoke is None:
            self.send({"event": "error", "phase": "invoke", "message": f"{self.job['runtime']} takes no given input"})
            return
        try:
            x = np.frombuffer(base64.b64decode(cmd["data"]), dtype=cmd["dtype"]).reshape(cmd["shape"])
            out = np.ascontiguousarray(self.invoke(np.array(x)))
        except Exception as e:  # noqa: BLE001 - a reply, not a dead worker
            self.send({"event": "error", "phase": "invoke", "message": f"{type(e).__name__}: {e}"[:500]})
            return
        self.send({"event": "output", "shape": list(out.shape), "dtype": out.dtype.name, "data": _b64(out)})

    def handle(self, cmd: dict[str, Any]) -> bool:
        """Answer one command; False means quit."""
        kind = cmd.get("cmd")
        if kind == "quit":
            return False
        if kind == "run":
            assert self.call is not None
            for _ in range(int(cmd.get("warmup", 0))):
                self.call()
            gc_was = gc.isenabled()
            gc.disable()  # a collection in the middle of a timed call is harness noise, not model latency
            try:
                c0, w0 = time.process_time(), time.perf_counter()
                t, c, v = timed_calls(self.call, int(cmd["n"]), self.delay_s)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            finally:
                if gc_was:
                    gc.enable()
            self.send({"event": "samples", "t": t, "c": c, "v": v, "cpu_s": cpu, "wall_s": wall})
        elif kind == "overhead":
            gc.disable()
            try:
                t = timed_calls(_empty, int(cmd.get("n", 1000)))[0]
            finally:
                gc.enable()
            self.send({"event": "overhead", "t": t})
        elif kind == "ops":
            runtime = self.job["runtime"]
            profiler = _PROFILERS.get(runtime)
            if profiler is None:
                reason = _NO_PROFILER.get(runtime, f"no per-operator profiler for {runtime}")
                self.send({"event": "ops", "available": False, "reason": reason})
            else:
                import numpy as np

                try:
                    found = profiler(self.job, np, int(cmd.get("n", 20)), int(cmd.get("warmup", 3)))
                except Exception as e:  # noqa: BLE001 - a reply, not a dead worker
                    self.send({"event": "error", "phase": "ops", "message": f"{type(e).__name__}: {e}"})
                else:
                    self.send({"event": "ops", "available": True, **found})
        elif kind == "invoke":
            self._invoke(cmd)
        elif kind == "count":
            if self.counts is None:
                path = os.environ.get("HSNET_INSN_FILE")
                if not path or not os.path.exists(path):
                    self.send(
                        {
                            "event": "error",
                            "phase": "count",
                            "message": "instruction counts need the emulated "
                            "device's plugin (--remote qemu:cortex-a53|a72|a76); this Python runs without it",
                        }
                    )
                    return True
                self.counts = open(path, "rb")  # noqa: SIM115 - open for the worker's life
                os.unlink(path)  # the plugin keeps writing to it; nothing is left behind, even if killed
            assert self.call is not None
            for _ in range(int(cmd.get("warmup", 1))):
                self.call()
            try:
                calls = counted_calls(self.call, int(cmd.get("n", 3)), self.counts)
            except Exception as e:  # noqa: BLE001 - a reply, not a dead worker
                self.send({"event": "error", "phase": "count", "message": f"{type(e).__name__}: {e}"})
            else:
                self.send({"event": "counts", "calls": calls})
        elif kind == "stats":
            self.send({"event": "stats", "peak_rss_bytes": _peak_rss_bytes(), "os_threads": _os_threads()})
        else:
            self.send({"event": "error", "phase": "protocol", "message": f"unknown command {kind!r}"})
        return True


#: The marker system calls of the emulated device's plugin (numbers no kernel uses: qemu answers ENOSYS).
MARK_START, MARK_STOP = 0x4D41, 0x4D42


def counted_calls(call: Callable[[], Any], n: int, counts: Any) -> list[dict[str, int]]:
    """``n`` calls, each between the plugin's markers; the plugin's lines for them (read from the open binary
    file ``counts``, from its current end), parsed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    counts.seek(0, os.SEEK_END)
    offset = counts.tell()
    for _ in range(n):
        libc.syscall(MARK_START)
        call()
        libc.syscall(MARK_STOP)
    counts.seek(offset)
    calls: list[dict[str, int]] = []
    for word in counts.read().decode("ascii", "replace").split():
        key, _, value = word.partition("=")
        if key == "insns":
            calls.append({})
        if calls and value.isdigit():
            calls[-1][key] = int(value)
    if len(calls) != n:
        raise RuntimeError(f"the instruction-count plugin wrote {len(calls)} counts for {n} calls")
    return calls


def _watch_stdin() -> None:
    """Exit the process when stdin's writer goes away (a hang-up), without reading from it."""
    import select
    import threading

    def watch() -> None:
        poller = select.poll()
        poller.register(sys.stdin.fileno(), select.POLLHUP | getattr(select, "POLLRDHUP", 0))
        while True:
            for _fd, events in poller.poll():
                if events & (select.POLLHUP | getattr(select, "POLLRDHUP", 0) | select.POLLERR | select.POLLNVAL):
                    os._exit(3)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _b64(a: Any) -> str:
    import base64

    return base64.b64encode(a.tobytes()).decode("ascii")


def _with_loop(call: Callable[[], Any], n: int) -> Callable[[], Any]:
    def looped() -> Any:
        out = call()
        for _ in range(n):
            pass
        return out

    return looped


def _empty() -> None:
    return None


def _parse_job(argv: list[str]) -> dict[str, Any]:
    if len(argv) != 1:
        raise SystemExit("usage: worker.py JOB_JSON | @job.json")
    text = argv[0]
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    job = json.loads(text)
    if not isinstance(job, dict):
        raise SystemExit("the job must be a JSON object")
    return job


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    job = _parse_job(sys.argv[1:] if argv is None else argv)
    for k, v in thread_env(int(job.get("threads", 1))).items():
        os.environ.setdefault(k, v)  # the parent sets them too; by-path runs on a device get them here
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so C-level prints cannot corrupt it.
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if job.get("watch_stdin"):
        _watch_stdin()
    worker = Worker(job, proto)
    if not worker.start():
        return 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if not worker.handle(json.loads(line)):
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
