"""The export pipeline end to end on small models: manifest, metadata, precisions, batches, planning."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import hsnet
from deploy.errors import DeployError
from deploy.images import load_calibration
from deploy.manifest import hash_path, read_manifest
from deploy.metadata import ModelMetadata
from deploy.pipeline import export_model
from deploy.request import plan_targets
from deploy.targets.base import ExportOptions
from deploy.targets.onnx import OnnxArtifact, OnnxExporter
from hsnet.registry import CIFAR100_MEAN, CIFAR100_STD

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_manifest_describes_every_file_and_stage(hsnet_export) -> None:
    m = read_manifest(hsnet_export.manifest)
    assert m["status"] == "ok" and m["model"] == "hsnet" and m["weights"] == "random seed=0"
    names = sorted(p.name for p in hsnet_export.out_dir.iterdir())
    assert names == ["hsnet_fp16.onnx", "hsnet_fp32.onnx", "manifest.json"]
    for name in names[:2]:  # every file's sha256 and size are those of the file on disk
        assert m["files"][name] == hash_path(hsnet_export.out_dir / name)
    assert {a["file"]: a["sha256"] for a in m["artifacts"]} == {n: m["files"][n]["sha256"] for n in names[:2]}
    assert set(m["tools"]) >= {"python", "hsnet", "torch", "numpy", "onnx", "onnxruntime", "onnxsim"}
    assert m["input"] == {
        "name": "input", "shape": [1, 3, 32, 32], "layout": "NCHW", "dtype": "float32", "mean": list(CIFAR100_MEAN),
        "std": list(CIFAR100_STD), "normalization": "(pixel / 255 - mean) / std, per channel",
    }  # fmt: skip
    assert m["output"] == {"name": "logits", "shape": [1, 10]} and len(m["labels"]) == 10
    assert [p["stage"] for p in m["parity"]] == ["prepare", "onnx/fp32", "onnx/fp16"]
    assert all(p["passed"] and p["images"] == 16 for p in m["parity"])
    onnx_info = m["onnx"]
    assert onnx_info["onnxsim_ok"] and onnx_info["onnxsim"]["error"] is None
    assert onnx_info["nodes_before_simplification"] >= onnx_info["nodes_after_simplification"]
    final = onnx.load(hsnet_export.out_dir / "hsnet_fp32.onnx")
    assert onnx_info["nodes_after_simplification"] == len(final.graph.node)
    assert m["graph"]["cross_check"]["params_equal"] and m["graph"]["cross_check"]["macs_equal"]
    assert Counter(r["rewrite"] for r in m["rewrites"]) == {"eca_conv1d_as_conv2d": 8, "ghost_drop_identity_slice": 20}
    assert any("rewrite applied: eca_conv1d_as_conv2d at 8 modules" in f["message"] for f in m["findings"])
    assert {"prepare", "onnx_export", "onnxsim", "graph_stats", "parity onnx/fp32"} <= set(m["timings"])


def test_metadata_round_trip(hsnet_export, hsnet_onnx) -> None:
    stored = {p.key: p.value for p in onnx.load(hsnet_onnx).metadata_props}
    meta = ModelMetadata.from_strings(stored)
    assert meta == ModelMetadata.from_strings(meta.to_strings())
    assert (meta.model, meta.input_size, meta.num_classes, meta.precision) == ("hsnet", 32, 10, "fp32")
    assert meta.mean == CIFAR100_MEAN and meta.std == CIFAR100_STD and meta.labels[3] == "class_3"
    assert (
        meta.seed == 0
        and meta.checkpoint_sha256 is None
        and meta.rewrites == ("eca_conv1d_as_conv2d", "ghost_drop_identity_slice")
    )
    assert stored["output_name"] == "logits" and stored["input_layout"] == "NCHW"
    assert OnnxArtifact.load(hsnet_onnx).metadata() == stored  # what onnxruntime reads back
    fp16 = OnnxArtifact.load(hsnet_export.out_dir / "hsnet_fp16.onnx")
    assert ModelMetadata.from_strings(fp16.metadata()).precision == "fp16"
    with pytest.raises(DeployError, match="carries no hsnet metadata"):
        ModelMetadata.from_strings({"model": "hsnet"})
    with pytest.raises(DeployError, match="malformed"):
        ModelMetadata.from_strings({**stored, "labels": "[not json"})


def test_fp16_onnx_is_half_the_size_with_float32_io(hsnet_export) -> None:
    fp32, fp16 = hsnet_export.artifacts
    assert fp16.size < 0.55 * fp32.size
    assert fp16.input["dtype"] == "float32"  # keep_io_types: the calling convention does not change
    assert fp32.parity.max_rel_error < 1e-5 < fp16.parity.max_rel_error < 2e-2
    assert fp16.parity.context() == "onnxruntime 1.32.0, 1 threads, batch 1, fp16".replace(
        "1.32.0", fp16.parity.runtime_version
    )


def test_dynamic_batch(tmp_path) -> None:
    report = export_model("mobilenetv3_small_100", num_classes=10, input_size=32, batch=None, out_dir=tmp_path,
                          parity_images=5)  # fmt: skip
    (artifact,) = report.artifacts
    assert artifact.input["shape"] == [-1, 3, 32, 32]
    assert read_manifest(tmp_path)["input"]["shape"] == [-1, 3, 32, 32]
    model = OnnxArtifact.load(artifact.path, threads=1)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert model(x).shape == (3, 10) and model(x[:1]).shape == (1, 10)
    np.testing.assert_allclose(model(x)[:1], model(x[:1]), rtol=1e-5, atol=1e-6)


def test_fixed_batch_two_pads_an_odd_image_count(tmp_path) -> None:
    report = export_model("squeezenet1_1", num_classes=10, input_size=32, batch=2, out_dir=tmp_path, parity_images=5)
    (artifact,) = report.artifacts
    assert artifact.input["shape"] == [2, 3, 32, 32]
    assert artifact.parity.images == 5 and artifact.parity.batch == 2 and artifact.parity.passed


def test_checkpoint_weights_give_accuracy_figures_and_verify_finds_them(tmp_path) -> None:
    from deploy.images import parity_images
    from deploy.verify import verify_artifact
    from hsnet.checkpoint import Checkpoint, save_checkpoint
    from hsnet.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD

    _, _, classes = parity_images(10, 32, mean=(0.5,) * 3, std=(0.5,) * 3)
    model = hsnet.create_model("mobilenetv3_small_100", num_classes=10)
    ckpt = tmp_path / "fm.pt"
    save_checkpoint(ckpt, Checkpoint(
        model="mobilenetv3_small_100", num_classes=10, input_size=32, in_chans=3, classes=list(classes),
        mean=list(FASHION_MNIST_MEAN), std=list(FASHION_MNIST_STD),
        state_dict=model.state_dict(),
    ))  # fmt: skip
    out = tmp_path / "out"
    report = export_model("mobilenetv3_small_100", checkpoint=ckpt, out_dir=out, parity_images=20)
    (artifact,) = report.artifacts
    assert artifact.parity.accuracy_reference is not None and artifact.parity.accuracy_drop == 0.0
    meta = ModelMetadata.from_strings(OnnxArtifact.load(artifact.path).metadata())
    assert meta.labels == tuple(classes) and meta.input_size == 32
    assert meta.checkpoint_sha256 == hash_path(ckpt)["sha256"]
    assert json.loads((out / "manifest.json").read_text())["checkpoint"]["path"] == str(ckpt.resolve())
    verified = verify_artifact(artifact.path, images=10)  # finds the checkpoint through the manifest
    assert verified.parity.passed and verified.weights == meta.weights


def test_planning_expands_all_and_reports_skips() -> None:
    plan, skipped = plan_targets(["all"], ["fp16"], None)
    assert [(e.name, p) for e, p in plan] == [("onnx", "fp32"), ("onnx", "fp16"), ("tflite", "fp16"),
                                               ("coreml", "fp16")]  # fmt: skip
    assert skipped == []
    plan, skipped = plan_targets(["all"], ["int8"], None)
    assert [(e.name, p) for e, p in plan] == [("onnx", "fp32"), ("onnx", "int8"), ("tflite", "int8")]
    assert {f.target for f in skipped} == {"coreml"} and all(f.severity == "info" for f in skipped)


@pytest.mark.parametrize("batch", [4, None])
def test_planning_all_leaves_out_a_target_that_cannot_take_the_batch(batch) -> None:
    plan, skipped = plan_targets(["all"], ["fp32"], None, batch)
    assert [(e.name, p) for e, p in plan] == [("onnx", "fp32"), ("tflite", "fp32")]
    (finding,) = skipped
    assert finding.target == "coreml" and finding.severity == "info"
    assert finding.message.startswith("target skipped: target coreml takes one image per prediction")
    # Named explicitly, the target is not skipped: its validate() refuses the batch with the same reason.
    plan, skipped = plan_targets(["coreml"], ["fp32"], None, batch)
    assert [e.name for e, _ in plan] == ["onnx", "coreml"] and skipped == []
    with pytest.raises(DeployError, match="valid: --batch 1$"):
        plan[1][0].validate(ExportOptions(precision="fp32", batch=batch))


@pytest.mark.parametrize(
    ("targets", "precisions", "converter", "message"),
    [
        (["pt2"], ["int8"], None, "target pt2 does not support precision 'int8'; valid: fp32"),
        (["tensorrt"], ["fp32"], None, "unknown target 'tensorrt'; valid: onnx, tflite, coreml, pt2, all"),
        (["onnx"], ["fp8"], None, "unknown precision 'fp8'; valid: fp32, fp16, int8"),
        (["onnx"], ["fp32"], "tf2onnx", "no selected target has converter 'tf2onnx'; valid: torch.onnx"),
    ],
)
def test_planning_rejects_what_no_target_can_do(targets, precisions, converter, message) -> None:
    with pytest.raises(DeployError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        plan_targets(targets, precisions, converter)


def test_calibration_sources(tmp_path) -> None:
    x, source = load_calibration(None, input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD, count=6)
    assert x.shape == (6, 3, 32, 32) and source == "6 Fashion-MNIST train images"
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", images)
    x, source = load_calibration(tmp_path / "u8.npy", input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    assert x.shape == (4, 3, 32, 32) and "4 uint8 images" in source
    good = np.zeros((3, 3, 32, 32), np.float32)
    assert load_calibration(good, input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)[0].shape == good.shape
    for bad, match in [
        (np.zeros((3, 3, 16, 16), np.float32), r"shape \(3, 3, 16, 16\); expected float32 \(N, 3, 32, 32\)"),
        (np.zeros((3, 32, 32), np.float32), r"shape \(3, 32, 32\); expected float32 \(N, C, H, W\)"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN"),
    ]:
        with pytest.raises(DeployError, match=match):
            load_calibration(bad, input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(DeployError, match="give an image folder, a .npy file"):
        load_calibration(tmp_path / "x.txt", input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    (tmp_path / "cut.npy").write_bytes(np.save.__doc__.encode()[:50])
    with pytest.raises(DeployError, match="not a readable .npy array"):
        load_calibration(tmp_path / "cut.npy", input_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)


def test_prepare_randomizes_batchnorm_deterministically() -> None:
    from deploy.prepare import prepare_model

    a = prepare_model("hsnet", num_classes=10, input_size=32, seed=3)
    b = prepare_model("hsnet", num_classes=10, input_size=32, seed=3)
    bn = a.reference.stem.bn
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # folding is really exercised
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


class _BrokenConverter(OnnxExporter):
    """A registered target whose converter has a bug: it flips and doubles one filter of one convolution."""

    name = "broken"

    def artifact_name(self, ctx) -> str:  # noqa: ANN001
        return f"{ctx.model_name}_broken_{ctx.options.precision}.onnx"

    def export(self, ctx):  # noqa: ANN001, ANN201
        model = onnx.load(ctx.onnx_path)
        for init in model.graph.initializer:
            if init.name == "features.3.expand3x3.conv.weight":
                w = numpy_helper.to_array(init).copy()
                w[0] *= -2
                init.CopyFrom(numpy_helper.from_array(w, init.name))
        out = ctx.work_dir / self.artifact_name(ctx)
        onnx.save(model, out)
        return out


def test_a_parity_failure_fails_the_export_and_keeps_the_artifact_out(tmp_path, monkeypatch) -> None:
    from deploy.errors import ParityError
    from deploy.targets import EXPORTERS

    monkeypatch.setitem(EXPORTERS, "broken", _BrokenConverter)  # a plug-in target, registered like the others
    with pytest.raises(ParityError) as info:
        export_model("squeezenet1_1", targets=("broken",), num_classes=10, input_size=32, out_dir=tmp_path,
                     parity_images=8, bisect=True)  # fmt: skip
    message = str(info.value)
    assert "parity check failed at broken/fp32" in message and "max relative error" in message
    assert "bisect: first divergence at module 'features.3.expand3x3.conv'" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "squeezenet1_1_fp32.onnx"]
    m = read_manifest(tmp_path)
    assert m["status"] == "failed" and m["error"] == message
    assert [a["file"] for a in m["artifacts"]] == ["squeezenet1_1_fp32.onnx"]  # what passed stays, described
    assert [(p["stage"], p["passed"]) for p in m["parity"]] == [("prepare", True), ("onnx/fp32", True),
                                                              ("broken/fp32", False)]  # fmt: skip
    assert m["bisect"]["module"] == "features.3.expand3x3.conv" and m["bisect"]["op_type"] == "Conv"
