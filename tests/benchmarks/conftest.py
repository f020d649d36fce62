"""Small real artifacts for the benchmark tests: tiny CNNs exported with torch (no deploy, so they build in a
second), a heavier twin with extra layers (a real slowdown), and a corrupt file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn


def tiny_cnn(extra_layers: int = 0) -> nn.Module:
    """A 32x32 classifier; ``extra_layers`` adds 3x3 convolutions at full resolution (each about doubles the work)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    for _ in range(extra_layers):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    layers += [nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(32, 10)]  # fmt: skip
    return nn.Sequential(*layers).eval()


def export_onnx(model: nn.Module, path: Path, size: int = 32) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])  # fmt: skip
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``small`` (.onnx), ``slow`` (.onnx, the same net with 4 extra conv layers), ``pt2`` (torch.export of
    ``small``) and ``corrupt`` (a truncated .onnx)."""
    d = tmp_path_factory.mktemp("bench-artifacts")
    small = export_onnx(tiny_cnn(), d / "tiny_fp32.onnx")
    slow = export_onnx(tiny_cnn(extra_layers=4), d / "tinyslow_fp32.onnx")
    pt2 = d / "tiny_fp32.pt2"
    torch.export.save(torch.export.export(tiny_cnn(), (torch.zeros(1, 3, 32, 32),)), pt2)
    corrupt = d / "corrupt_fp32.onnx"
    corrupt.write_bytes(small.read_bytes()[: small.stat().st_size // 3])
    return {"small": small, "slow": slow, "pt2": pt2, "corrupt": corrupt}
