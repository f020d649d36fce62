"""The measuring worker in real subprocesses: protocol, self-containment, crash, hang and missing runtime."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hsnet.devices import worker
from hsnet.devices.handle import RUNNER_PATH, WorkerFailed, WorkerProcess, WorkerSkipped

ALLOWED_IMPORTS = {"numpy", "torch", "onnxruntime", "ai_edge_litert", "tflite_runtime", "coremltools", "PIL"}


def test_worker_imports_only_stdlib_numpy_and_runtimes() -> None:
    tree = ast.parse(RUNNER_PATH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    foreign = {n for n in names - ALLOWED_IMPORTS if n not in sys.stdlib_module_names}
    assert foreign == set(), f"worker.py must stay self-contained, imports {foreign}"


def test_worker_copied_alone_measures_onnx(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    """As on a remote device: the single file, run by path, away from the project."""
    copy = shutil.copy(RUNNER_PATH, tmp_path / "worker.py")
    job = json.dumps({"runtime": "onnxruntime", "artifact": str(artifacts["small"]), "threads": 1})
    commands = '{"cmd": "run", "n": 7, "warmup": 1}\n{"cmd": "overhead", "n": 50}\n{"cmd": "stats"}\n{"cmd": "quit"}\n'
    out = subprocess.run(
        [sys.executable, "-I", str(copy), job], input=commands, capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, **worker.thread_env(1)},
    )  # fmt: skip
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["event"] for r in replies] == ["ready", "samples", "overhead", "stats"], out.stderr
    ready, samples, overhead, stats = replies
    assert ready["input_shape"] == [1, 3, 32, 32] and ready["threads_set"]["intra_op"] == 1
    assert ready["env_threads"]["OMP_NUM_THREADS"] == "1"
    assert len(samples["t"]) == len(samples["c"]) == len(samples["v"]) == 7
    assert all(t > 0 for t in samples["t"])
    assert len(overhead["t"]) == 50
    assert stats["peak_rss_bytes"] > 10 * 2**20


def test_worker_torch_program(artifacts: dict[str, Path]) -> None:
    job = {"runtime": "torch", "artifact": str(artifacts["pt2"]), "threads": 1, "input_shape": [1, 3, 32, 32]}
    with WorkerProcess(job) as w:
        ready = w.start(120)
        assert ready["threads_set"] == {"intra_op": 1, "inter_op": 1}
        assert len(w.request({"cmd": "run", "n": 3}, 60)["t"]) == 3


def test_corrupt_artifact_is_a_failure(artifacts: dict[str, Path]) -> None:
    with pytest.raises(WorkerFailed, match=r"^load: .*(Protobuf|protobuf|parsing|Load model)"):
        WorkerProcess({"runtime": "onnxruntime", "artifact": str(artifacts["corrupt"]), "threads": 1}).start(60)


def test_killed_worker_is_a_failure(artifacts: dict[str, Path]) -> None:
    with WorkerProcess({"runtime": "onnxruntime", "artifact": str(artifacts["small"]), "threads": 1}) as w:
        w.start(60)
        os.kill(w.ready["pid"], signal.SIGKILL)  # what the OOM killer or a native crash does to the process
        with pytest.raises(WorkerFailed, match=r"worker killed by SIGKILL \(run\)"):
            w.request({"cmd": "run", "n": 1}, 30)


def test_hang_is_a_timeout(artifacts: dict[str, Path]) -> None:
    with WorkerProcess({"runtime": "onnxruntime", "artifact": str(artifacts["slow"]), "threads": 1}) as w:
        w.start(60)
        with pytest.raises(WorkerFailed, match=r"timed out after 0.001 s \(run\)"):
            w.request({"cmd": "run", "n": 10000}, 0.001)  # ~10 s of work against a 1 ms deadline
        assert w.proc is not None and w.proc.poll() is not None  # killed, not left running


def test_missing_runtime_is_skipped(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    # Shadow onnxruntime for this one subprocess only: a package of that name that fails to import.
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    job = {"runtime": "onnxruntime", "artifact": str(artifacts["small"]), "threads": 1}
    with pytest.raises(WorkerSkipped, match=r"onnxruntime is not installed: install hsnet\[onnx\]"):
        WorkerProcess(job, env={"PYTHONPATH": str(tmp_path / "shadow")}).start(60)


def test_coreml_is_skipped_off_macos(artifacts: dict[str, Path]) -> None:
    if sys.platform == "darwin":
        pytest.skip("CoreML runs on macOS")
    with pytest.raises(WorkerSkipped, match="CoreML prediction needs macOS"):
        WorkerProcess({"runtime": "coreml", "artifact": str(artifacts["small"]), "threads": 1}).start(60)


def test_injected_delay_is_cpu_work() -> None:
    wall, cpu, switches = worker.timed_calls(lambda: None, 5, delay_s=0.002)
    assert all(c >= 0.002 for c in cpu)  # the busy wait ends on the process CPU clock, not on the wall clock
    assert len(wall) == len(switches) == 5
