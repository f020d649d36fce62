"""Every registered model exports to ONNX at 32x32, passes parity on real images, and its graph counts equal the
profiler's. Parametrized over ``list_models()``, so a newly registered model is exported the moment it exists."""

from __future__ import annotations

import pytest

import hsnet
from deploy.pipeline import export_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BIG = {"vgg16_bn", "resnet50", "resnet50_v1_5", "cifar_vgg16_bn"}  # 25-138 M parameters: seconds each, not tenths


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in hsnet.list_models()]
)
def test_every_model_exports_to_onnx_with_parity(name: str, tmp_path) -> None:
    report = export_model(name, num_classes=10, input_size=32, out_dir=tmp_path, parity_images=8)
    (artifact,) = report.artifacts
    assert artifact.path == tmp_path / f"{name}_fp32.onnx" and artifact.path.is_file()
    stages = [p.stage for p in report.parity]
    assert stages == ["prepare", "onnx/fp32"]
    for result in report.parity:
        assert result.passed, result.describe()
        assert result.max_rel_error < 1e-4 and result.top1_agreement >= 7 / 8
    cc = report.graph["cross_check"]
    assert cc["params_equal"] and cc["macs_equal"], cc
    assert report.simplify.ok and report.simplify.nodes_after <= report.simplify.nodes_before
    assert not [f for f in report.findings if f.severity != "info"], report.findings
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([artifact.path.name, "manifest.json"])
