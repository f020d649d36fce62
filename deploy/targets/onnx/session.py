"""onnxruntime session options, one setting for every session deploy opens (artifacts, checks, the tuner)."""

from __future__ import annotations

from deploy.deps import require

__all__ = ["session_options"]


def session_options(threads: int | None):  # noqa: ANN201 - onnxruntime is imported lazily
    """onnxruntime session options: all graph optimizations, ``threads`` intra-op threads, no spinning.

    Spinning threads burn the cores a shared machine needs; turning it off costs little at batch 1.
    """
    ort = require("onnxruntime", "onnx", "running ONNX artifacts")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts
