"""The artifact cache: built by deploy on first use, found afterwards, keyed by what changes the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.artifacts import Built, ModelSpec, build_artifacts, cache_key, describe_artifact
from benchmarks.errors import BenchError


@pytest.mark.slow
def test_build_once_then_reuse(tmp_path: Path) -> None:
    spec = ModelSpec("cifar_shufflenetv2", 32, 1, 10)
    first = build_artifacts(spec, [("onnx", "fp32"), ("pt2", "fp32"), ("coreml", "int8")], cache=tmp_path)
    onnx, pt2, int8 = first[("onnx", "fp32")], first[("pt2", "fp32")], first[("coreml", "int8")]
    assert isinstance(onnx, Built) and isinstance(pt2, Built)
    assert onnx.path.suffix == ".onnx" and onnx.size == onnx.path.stat().st_size
    assert onnx.parity is not None and onnx.parity["max_rel_error"] < 1e-4  # deploy's parity, from its manifest
    assert onnx.weights == pt2.weights == "random seed=0"
    assert pt2.input_shape == (1, 3, 32, 32)
    assert isinstance(int8, Exception) and "int8" in str(int8)  # deploy's CoreML target has no int8: a row status
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert not any(name.startswith(".") for name in folders)  # nothing half-built left behind
    again = build_artifacts(spec, [("onnx", "fp32"), ("pt2", "fp32")], cache=tmp_path)
    assert again[("onnx", "fp32")] == onnx and sorted(p.name for p in tmp_path.iterdir()) == folders
    assert cache_key(spec) != cache_key(ModelSpec("cifar_shufflenetv2", 32, 1, 100))
    assert cache_key(spec) != cache_key(ModelSpec("cifar_shufflenetv2", 48, 1, 10))
    info = describe_artifact(onnx.path)
    assert (info["model"], info["runtime"], info["input_size"], info["batch"]) == ("cifar_shufflenetv2",
                                                                                   "onnxruntime", 32, 1)  # fmt: skip
    assert info["sha256"] == onnx.sha256 and info["macs"] and info["params"]


def test_describe_artifact_rejects(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no such file"):
        describe_artifact(tmp_path / "absent.onnx")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(BenchError, match=r"unknown format '.bin'; known: .onnx, .tflite, .mlpackage, .pt2"):
        describe_artifact(tmp_path / "model.bin")
