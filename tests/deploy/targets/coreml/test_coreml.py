"""CoreML target: real coremltools conversions, checked on real images with the numpy ML Program evaluator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deploy.errors import DeployError, UnsupportedOperationError
from deploy.images import parity_images
from deploy.parity import TOLERANCES, measure_parity
from deploy.prepare import PreparedModel, prepare_model
from deploy.targets import load_artifact
from deploy.targets.base import ExportContext, ExportOptions
from deploy.targets.coreml.target import CoreMLArtifact, CoreMLExporter

pytest.importorskip("coremltools")

SIZE = 32
MODELS = ("hsnet", "ghostnet_100", "mobilenetv2_100", "shufflenetv2_100")
PRECISIONS = ("fp32", "fp16")
IMAGES = 16


def _context(prepared: PreparedModel, precision: str, work: Path, **options) -> ExportContext:
    return ExportContext(
        model_name=prepared.name,
        model=prepared.model,
        onnx_path=work / "unused.onnx",
        labels=list(prepared.labels),
        mean=prepared.mean,
        std=prepared.std,
        options=ExportOptions(precision=precision, batch=1, input_size=prepared.input_size, **options),
        work_dir=work,
        metadata=prepared.metadata(precision).to_strings(),
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict]:
    """hsnet through the whole pipeline (ONNX stage, pre-flight, parity, manifest); the others through the exporter."""
    from deploy.pipeline import export_model

    out: dict[str, dict] = {}
    root = tmp_path_factory.mktemp("coreml")
    report = export_model(
        "hsnet", targets=["coreml"], precisions=list(PRECISIONS), input_size=SIZE, num_classes=10,
        out_dir=root / "hsnet", parity_images=8,
    )  # fmt: skip
    out["hsnet"] = {
        "prepared": prepare_model("hsnet", input_size=SIZE, num_classes=10),
        "report": report,
        **{a.precision: a.path for a in report.artifacts if a.target == "coreml"},
    }
    for name in MODELS[1:]:
        prepared = prepare_model(name, input_size=SIZE, num_classes=10)
        exporter = CoreMLExporter()  # one exporter for both precisions, as the pipeline does
        paths = {p: exporter.export(_context(prepared, p, root)) for p in PRECISIONS}
        out[name] = {"prepared": prepared, **paths}
    return out


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_parity_on_real_images(exported, name, precision):
    prepared = exported[name]["prepared"]
    artifact = load_artifact(exported[name][precision], threads=1)
    assert isinstance(artifact, CoreMLArtifact)
    x, _, _ = parity_images(IMAGES, SIZE, mean=prepared.mean, std=prepared.std)
    result = measure_parity(artifact, prepared.reference, x, precision=precision, stage=f"coreml/{precision}")
    assert result.passed, result.describe()
    assert result.top1_agreement == 1.0
    if precision == "fp32":
        assert result.max_rel_error <= TOLERANCES["fp32"].max_rel_error
    else:
        # Really computed in float16 (the evaluator rounds every result), yet within the fp16 tolerance.
        assert 1e-5 < result.max_rel_error <= TOLERANCES["fp16"].max_rel_error
    assert result.runtime == "hsnet numpy MIL evaluator" and result.threads == 1


@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_pipeline_records_coreml(exported):
    report = exported["hsnet"]["report"]
    coreml = {a.precision: a for a in report.artifacts if a.target == "coreml"}
    assert set(coreml) == set(PRECISIONS)
    assert all(a.parity.passed for a in coreml.values())
    assert coreml["fp32"].input["dtype"] == "image" and coreml["fp32"].input["shape"] == [1, 3, SIZE, SIZE]
    manifest = json.loads(report.manifest.read_text())
    text = json.dumps(manifest)
    assert "hsnet_fp16.mlpackage" in text and "coremltools" in text
    assert any(f.target == "coreml" and "normalization inside the package" in f.message for f in report.findings)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_labels_and_metadata(exported, precision):
    prepared = exported["hsnet"]["prepared"]
    artifact = load_artifact(exported["hsnet"][precision])
    meta = artifact.metadata()
    assert json.loads(meta["labels"]) == list(prepared.labels)
    assert json.loads(meta["mean"]) == list(prepared.mean) and json.loads(meta["std"]) == list(prepared.std)
    assert meta["model"] == "hsnet" and meta["precision"] == precision and meta["input_name"] == "image"
    assert meta["hsnet_version"] and meta["author"].startswith("hsnet ")
    assert "hsnet" in meta["short_description"] and "10 classes" in meta["short_description"]
    info = artifact.describe()
    assert info["inputs"] == [{"name": "image", "kind": "image", "shape": [1, 3, SIZE, SIZE], "type": "RGB"}]
    assert info["outputs"] == [{"name": "logits", "kind": "multiarray", "shape": [1, 10], "type": "float32"}]
    assert info["opset"] == "CoreML6" and info["evaluator_unsupported_ops"] == []
    assert artifact.input_spec.dtype == "image" and artifact.input_spec.mean == prepared.mean


@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_image_input_normalization_is_exact(exported):
    """The program starts with pixels * 1/255, - mean, * 1/std (float32 constants), and 8-bit pixels give what
    PyTorch gives on the same pixels normalized in float64."""
    prepared = exported["hsnet"]["prepared"]
    program = load_artifact(exported["hsnet"]["fp32"]).program
    first = program.operations[:3]
    assert [o.type for o in first] == ["mul", "sub", "mul"]
    consts = [program.constants[o.inputs["y"][0].name] for o in first]
    assert consts[0] == np.float32(1 / 255)
    np.testing.assert_array_equal(consts[1].reshape(-1), np.float32(prepared.mean))
    np.testing.assert_array_equal(consts[2].reshape(-1), (1 / np.float64(prepared.std)).astype(np.float32))
    pixels = np.random.default_rng(0).integers(0, 256, size=(1, 3, SIZE, SIZE)).astype(np.float32)
    got = program.run({"image": pixels})["logits"]
    shape = (1, 3, 1, 1)
    x = (pixels / 255.0 - np.float64(prepared.mean).reshape(shape)) / np.float64(prepared.std).reshape(shape)
    with torch.no_grad():
        want = prepared.reference(torch.from_numpy(x.astype(np.float32))).numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_fp16_package_is_half_the_size(exported, name):
    def weights(path: Path) -> int:
        return (path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").stat().st_size

    def total(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    fp32, fp16 = exported[name]["fp32"], exported[name]["fp16"]
    assert 0.49 <= weights(fp16) / weights(fp32) <= 0.51
    assert 0.45 <= total(fp16) / total(fp32) <= 0.6


class _Cumulative(nn.Module):
    """A tiny classifier with a cumulative sum, which coremltools converts and the evaluator does not know."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cumsum(self.conv(x), dim=1).mean((2, 3)))


class _FMod(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fmod(x, 1.5)


class _Unconvertible(nn.Module):
    """A tiny classifier with ``fmod``, which ONNX exports and coremltools 9.0 cannot convert."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.wrap = _FMod()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.wrap(self.conv(x)).mean((2, 3)))


def _tiny_context(model: nn.Module, work: Path, channels: int = 3) -> ExportContext:
    return ExportContext(
        model_name="tiny",
        model=model.eval(),
        onnx_path=work / "tiny.onnx",
        labels=["a", "b", "c"],
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        options=ExportOptions(precision="fp32", batch=1, input_size=8),
        work_dir=work,
    )


def test_grayscale_image_input(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.append(nn.Linear(4, 3))
    artifact = load_artifact(CoreMLExporter().export(_tiny_context(model, tmp_path, channels=1)))
    assert artifact.describe()["inputs"][0]["type"] == "GRAYSCALE"
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(artifact(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_unsupported_operation_is_named(tmp_path):
    path = CoreMLExporter().export(_tiny_context(_Cumulative(), tmp_path))
    artifact = load_artifact(path)
    assert artifact.describe()["evaluator_unsupported_ops"] == ["cumsum"]
    with pytest.raises(UnsupportedOperationError, match=r"MIL operation 'cumsum' \(output '\w+'\) is not supported"):
        artifact(np.zeros((1, 3, 8, 8), dtype=np.float32))


def test_preflight_names_what_coremltools_cannot_convert(tmp_path):
    from deploy.onnx_export import export_onnx

    ctx = _tiny_context(_Unconvertible(), tmp_path)
    export_onnx(ctx.model, ctx.onnx_path, input_shape=(1, 3, 8, 8))
    errors = [f for f in CoreMLExporter().preflight(ctx) if f.severity == "error"]
    assert len(errors) == 1
    assert "cannot convert aten.fmod" in errors[0].message and "wrap" in errors[0].message


def test_batch_and_precision_are_validated():
    exporter = CoreMLExporter()
    for batch in (2, None):
        with pytest.raises(DeployError, match="one image per prediction.*valid: --batch 1"):
            exporter.validate(ExportOptions(precision="fp32", batch=batch))
    with pytest.raises(DeployError, match="does not support precision 'int8'; valid: fp32, fp16"):
        exporter.validate(ExportOptions(precision="int8"))
    with pytest.raises(DeployError, match="has no converter 'onnx2tf'; valid: torch.export"):
        exporter.validate(ExportOptions(converter="onnx2tf"))
    exporter.validate(ExportOptions(precision="fp16", batch=1))


@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_artifact_checks_input(exported):
    artifact = load_artifact(exported["mobilenetv2_100"]["fp32"])
    with pytest.raises(DeployError, match=r"takes float32 \(N, 3, 32, 32\)"):
        artifact(np.zeros((1, 3, 16, 16), dtype=np.float32))
    assert artifact(np.zeros((3, 3, SIZE, SIZE), dtype=np.float32)).shape == (3, 10)


@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_truncated_or_corrupt_package(exported, tmp_path):
    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(exported["shufflenetv2_100"]["fp16"], broken)
    weights = broken / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(DeployError, match=r"broken.mlpackage/Data/com.apple.CoreML/weights/weight.bin: truncated"):
        load_artifact(broken)
    model = broken / "Data" / "com.apple.CoreML" / "model.mlmodel"
    model.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(DeployError, match=r"broken.mlpackage: corrupt model file"):
        load_artifact(broken)
    shutil.rmtree(broken / "Data")
    with pytest.raises(DeployError, match=r"root model .* is missing"):
        load_artifact(broken)


@pytest.mark.slow  # the module's exported fixture converts four models (about 20 s)
def test_macos_view_declares_float_pixels(exported):
    """On macOS the artifact runs ``MLModel.predict`` on the package with its image input declared as a float32
    multiarray (so that unrounded pixels reach the program); here only the view itself can be checked."""
    from deploy.targets.coreml.mil import read_spec
    from deploy.targets.coreml.target import _load_mlmodel

    path = exported["ghostnet_100"]["fp16"]
    spec = _load_mlmodel(path, load_artifact(path).program).get_spec()
    (feature,) = spec.description.input
    assert feature.name == "image" and feature.type.WhichOneof("Type") == "multiArrayType"
    assert list(feature.type.multiArrayType.shape) == [1, 3, SIZE, SIZE]
    assert spec.mlProgram == read_spec(path).mlProgram  # the program itself is untouched
