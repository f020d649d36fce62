"""Latency of the deployed graph against PyTorch eager and a naive ONNX export (a benchmark, not a test).

Three engines run the same model on the same real image, batch 1, one thread, interleaved round by round so
that a noisy shared machine slows all of them alike:

* ``exported``: the pipeline's graph (BatchNorm folded, branches merged, export rewrites, onnxsim) on
  onnxruntime (``ORT_ENABLE_ALL``, no spinning);
* ``eager``: PyTorch eager on the model as trained (not fused), ``torch.inference_mode``;
* ``naive``: ``torch.onnx.export`` of the unfused model, nothing else, on the same onnxruntime settings;
* ``tuned``: the exported graph after ``--tune`` (:mod:`deploy.targets.onnx.tune`, measured on this machine first),
  with the tuner's per-layer choices and gains in the result.

Run: ``hsnet bench export-speed [--model hsnet] [--input-size 224] [--rounds 15] [--iters 20] [--json]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["benchmark_export"]


def _time_calls(fn: Callable[[], Any], iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p25_ms": 1e3 * q[0],
        "p75_ms": 1e3 * q[2],
        "min_ms": 1e3 * min(times),
        "calls": len(times),
    }


def benchmark_export(
    model: str = "hsnet", *, input_size: int = 224, rounds: int = 15, iters: int = 20, threads: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Median latency (and spread) of the exported graph, PyTorch eager and a naive export; see module docstring.

    Returns:
        ``{"engines": {name: summary}, "ratios": {...}, "context": {...}}`` with times in milliseconds.
    """
    from deploy.images import parity_images
    from deploy.onnx_export import export_onnx
    from deploy.prepare import prepare_model
    from deploy.simplify import simplify_onnx
    from deploy.targets.onnx import OnnxArtifact
    from deploy.targets.onnx.tune import tune_onnx
    from hsnet.toolbox.machine import machine, package_version

    torch.set_num_threads(threads)
    prepared = prepare_model(model, input_size=input_size, seed=seed)
    shape = (1, prepared.in_chans, input_size, input_size)
    xs, _, _ = parity_images(16, input_size, mean=prepared.mean, std=prepared.std)
    x = np.array(xs[:1])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(prepared.model, tmp / "raw.onnx", input_shape=shape)
        simplify = simplify_onnx(tmp / "raw.onnx", tmp / "exported.onnx")
        export_onnx(prepared.reference, tmp / "naive.onnx", input_shape=shape)  # unfused, unrewritten, unsimplified
        naive_nodes = sum(OnnxArtifact.load(tmp / "naive.onnx").op_counts().values())
        tuning = tune_onnx(tmp / "exported.onnx", tmp / "tuned.onnx", np.array(xs), threads=threads, log=lambda _: None)
        exported = OnnxArtifact.load(tmp / "exported.onnx", threads=threads)
        tuned = OnnxArtifact.load(tmp / "tuned.onnx", threads=threads)
        naive = OnnxArtifact.load(tmp / "naive.onnx", threads=threads)
        xt = torch.from_numpy(x)
        eager = prepared.reference.eval()

        def run_eager() -> None:
            with torch.inference_mode():
                eager(xt)

        engines: dict[str, Callable[[], Any]] = {
            "exported": lambda: exported(x),
            "tuned": lambda: tuned(x),
            "eager": run_eager,
            "naive": lambda: naive(x),
        }
        for fn in engines.values():  # burn in: allocations, prepacking, caches
            _time_calls(fn, 5)
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(rounds):
            for name, fn in engines.items():
                times[name] += _time_calls(fn, iters)
    summary = {name: _summary(t) for name, t in times.items()}
    med = {name: s["median_ms"] for name, s in summary.items()}
    return {
        "model": model,
        "engines": summary,
        "ratios": {
            "exported_over_eager": med["exported"] / med["eager"],
            "exported_over_naive": med["exported"] / med["naive"],
            "exported_faster_than_naive_pct": 100 * (1 - med["exported"] / med["naive"]),
            "naive_over_tuned": med["naive"] / med["tuned"],
            "exported_over_tuned": med["exported"] / med["tuned"],
        },
        "tuning": tuning.to_dict(),
        "onnx_nodes": {"naive": naive_nodes, "exported": simplify.nodes_after},
        "context": {
            "input": list(shape),
            "batch": 1,
            "threads": threads,
            "precision": "fp32",
            "rounds": rounds,
            "iters_per_round": iters,
            "torch": torch.__version__,
            "onnxruntime": package_version("onnxruntime"),
            "machine": machine(),
        },
    }
