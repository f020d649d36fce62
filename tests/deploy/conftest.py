"""Fixtures shared by the deploy tests: small exports made once per session (32x32 inputs, 10 classes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.pipeline import export_model
from deploy.request import ExportReport


@pytest.fixture
def one_torch_thread():
    """PyTorch on one thread, as the export pipeline runs it: two threads on a busy 2-core machine mostly wait."""
    from deploy.pipeline import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def hsnet_export(tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    """HSNet (ECA rewrite) exported to ONNX fp32 + fp16 at 32x32 with random weights, 16 parity images."""
    out = tmp_path_factory.mktemp("hsnet_export")
    return export_model(
        "hsnet", precisions=("fp32", "fp16"), num_classes=10, input_size=32, out_dir=out, parity_images=16
    )


@pytest.fixture(scope="session")
def hsnet_onnx(hsnet_export: ExportReport) -> Path:
    """The fp32 ONNX artifact of :func:`hsnet_export`."""
    return next(a.path for a in hsnet_export.artifacts if a.target == "onnx" and a.precision == "fp32")
