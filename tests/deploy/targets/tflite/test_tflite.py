"""TFLite target: real onnx2tf and litert-torch conversions, run by the real LiteRT interpreter, on real images.

HSNet, GhostNet, MobileNetV2 and ShuffleNetV2 are each converted once (fp32, fp16 and int8 from one onnx2tf
translation) at 32x32 from the graph the pipeline's own stages produce, with sockets made unusable in the
converter's process; every test below reuses those files. HSNet's graph has a dynamic batch, ShuffleNetV2's a
fixed batch of 2, the others batch 1, so resizing, chunking and padding are all exercised.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
if importlib.util.find_spec("onnx2tf") is None:  # found, not imported: it would import TensorFlow in this process
    pytest.skip("onnx2tf is not installed", allow_module_level=True)

from deploy.errors import DeployError, MissingDependencyError  # noqa: E402
from deploy.images import parity_images  # noqa: E402
from deploy.metadata import ModelMetadata  # noqa: E402
from deploy.parity import TOLERANCES, compare_logits, reference_logits  # noqa: E402
from deploy.targets import load_artifact  # noqa: E402
from deploy.targets.base import ExportContext, ExportOptions  # noqa: E402
from deploy.targets.tflite.target import TFLiteArtifact, TFLiteExporter, convert_all  # noqa: E402

SIZE = 32
BATCH = {"hsnet": None, "ghostnet_100": 1, "mobilenetv2_100": 1, "shufflenetv2_100": 2}
PRECISIONS = ("fp32", "fp16", "int8")

SITECUSTOMIZE = """
import os, socket

_LOG = os.environ["HSNET_TEST_NET_LOG"]


def _refuse(*args, **kwargs):
    with open(_LOG, "a") as f:
        f.write(repr(args) + "\\n")
    raise OSError("network access blocked by the test")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
"""


@dataclass
class Converted:
    ctx: ExportContext
    paths: dict[str, Path]
    x: np.ndarray
    reference: np.ndarray
    metadata: dict[str, str]


@pytest.fixture(scope="module")
def net_jail(tmp_path_factory: pytest.TempPathFactory):
    """Python processes started while this is active cannot open a socket; attempts are logged to a file."""
    folder = tmp_path_factory.mktemp("netjail")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    attempts = folder / "attempts.log"
    attempts.touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(folder))
        mp.setenv("HSNET_TEST_NET_LOG", str(attempts))
        yield attempts


def _context(name: str, work: Path, batch: int | None, *, precision: str = "fp32", converter: str | None = None,
             arch: str = "aarch64"):  # fmt: skip
    from deploy.images import load_calibration
    from deploy.onnx_export import export_onnx
    from deploy.prepare import prepare_model
    from deploy.simplify import simplify_onnx

    p = prepare_model(name, num_classes=10, input_size=SIZE, seed=0)
    raw, onnx_path = work / "raw.onnx", work / "simplified.onnx"
    export_onnx(p.model, raw, input_shape=(batch or 1, 3, SIZE, SIZE), dynamic_batch=batch is None)
    assert simplify_onnx(raw, onnx_path).ok
    calibration, _ = load_calibration(None, input_size=SIZE, mean=p.mean, std=p.std, count=64)
    ctx = ExportContext(
        model_name=name,
        model=p.model,
        onnx_path=onnx_path,
        labels=list(p.labels),
        mean=p.mean,
        std=p.std,
        options=ExportOptions(precision=precision, batch=batch, input_size=SIZE, converter=converter, arch=arch),
        work_dir=work,
        calibration=calibration,
        metadata=p.metadata().to_strings(),
    )
    return p, ctx


#: The fast lane (-m "not slow") converts one model (7 s); the other three (30 s) run in the full suite. The files
#: are those for an aarch64 device (a phone): on x86-64 HSNet's int8 is converted from a filled graph (below).
FAST = "shufflenetv2_100"


@pytest.fixture(scope="module", params=[n if n == FAST else pytest.param(n, marks=pytest.mark.slow) for n in BATCH])
def converted(request, net_jail, tmp_path_factory) -> Converted:
    name = request.param
    p, ctx = _context(name, tmp_path_factory.mktemp(name), BATCH[name])
    paths = convert_all(ctx, PRECISIONS)
    x, _, _ = parity_images(32, SIZE, mean=p.mean, std=p.std)
    return Converted(ctx, paths, np.array(x), reference_logits(p.reference, x), p.metadata().to_strings())


def test_each_precision_matches_pytorch_with_its_documented_io(converted: Converted) -> None:
    sizes = {}
    for precision, path in converted.paths.items():
        artifact = load_artifact(path, threads=1)
        assert isinstance(artifact, TFLiteArtifact) and artifact.runtime == "ai-edge-litert"
        out = artifact(converted.x)
        r = compare_logits(
            converted.reference, out, precision=precision, stage=f"tflite/{precision}", runtime=artifact.runtime,
            runtime_version=artifact.runtime_version, threads=1, batch=1,
        )  # fmt: skip
        assert r.passed, r.describe()
        spec = artifact.input_spec
        batch = BATCH[converted.ctx.model_name]
        assert spec.layout == "NHWC" and spec.shape == (batch or -1, SIZE, SIZE, 3)
        assert out.dtype == np.float32 and out.shape == (len(converted.x), 10)
        if precision == "int8":
            assert spec.dtype == "int8" and spec.extra["output_dtype"] == "int8"
            assert spec.extra["quantization"]["scale"] > 0 and spec.extra["output_quantization"]["scale"] > 0
            assert r.max_rel_error < TOLERANCES["int8"].max_rel_error
            assert r.top1_agreement >= TOLERANCES["int8"].min_top1_agreement
        else:
            assert spec.dtype == "float32" and spec.extra["output_dtype"] == "float32"
            assert "quantization" not in spec.extra
            assert r.top1_agreement == 1.0
            assert r.max_rel_error < (2e-5 if precision == "fp32" else 5e-3)
        sizes[precision] = path.stat().st_size
    assert 0.45 < sizes["fp16"] / sizes["fp32"] < 0.55  # float16 weights
    assert sizes["int8"] / sizes["fp32"] < 0.32  # int8 weights plus per-channel scales


def _grouped_conv2d(artifact: TFLiteArtifact) -> int:
    """CONV_2D operators of the file whose filter sees fewer input channels than the input has (grouped)."""
    it = artifact.interpreter
    shapes = {t["index"]: tuple(t["shape"]) for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # noqa: SLF001 - the only per-op listing the runtime offers
    return sum(
        1 for op in ops if op["op_name"] == "CONV_2D" and shapes[op["inputs"][1]][-1] < shapes[op["inputs"][0]][-1]
    )


def test_int8_for_x86_64_runs_hsnet_grouped_convolutions_filled_and_computes_the_same(net_jail, tmp_path) -> None:
    # On x86-64, LiteRT's int8 took 1.20x HSNet's fp32 time with grouped convolutions and 0.55x with them filled
    # to one group (INT8_FILL_GROUPS); on aarch64 filling loses. The filled convolution is the same convolution.
    from deploy.targets.tflite.target import INT8_FILL_GROUPS

    assert INT8_FILL_GROUPS == {"x86_64": 1}
    p, x86 = _context("hsnet", tmp_path / "x86", 1, arch="x86_64")
    files = convert_all(x86, ("fp32", "int8"))
    _, arm = _context("hsnet", tmp_path / "arm", 1, arch="aarch64")
    phone = convert_all(arm, ("int8",))["int8"]
    filled, plain, fp32 = (TFLiteArtifact.load(f, threads=1) for f in (files["int8"], phone, files["fp32"]))
    assert "20 grouped convolution(s) filled to 1 group(s) for x86_64" in filled.metadata()["int8_filled"]
    assert "int8_filled" not in plain.metadata() and "int8_filled" not in fp32.metadata()
    assert _grouped_conv2d(filled) == 0 and _grouped_conv2d(plain) == _grouped_conv2d(fp32) == 20
    x, _, _ = parity_images(64, SIZE, mean=p.mean, std=p.std)
    reference = reference_logits(p.reference, x)
    for artifact in (filled, plain):
        r = compare_logits(reference, artifact(np.array(x)), precision="int8", stage="tflite/int8",
                           runtime=artifact.runtime, runtime_version="", threads=1, batch=1)  # fmt: skip
        assert r.passed, r.describe()
    a, b = filled(np.array(x)), plain(np.array(x))
    step = filled.input_spec.extra["output_quantization"]["scale"]
    print(f"filled vs grouped int8: max {np.abs(a - b).max() / step:.1f} output steps, "
          f"top-1 agreement {(a.argmax(1) == b.argmax(1)).mean():.3f}")  # fmt: skip
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95
    assert np.abs(a - b).max() <= 8 * step


def test_any_number_of_images_is_run_in_calls_of_the_file_batch(converted: Converted) -> None:
    if converted.ctx.model_name not in ("hsnet", "shufflenetv2_100"):
        pytest.skip("covered by the dynamic-batch (hsnet) and batch-2 (shufflenetv2) files")
    artifact = load_artifact(converted.paths["fp32"], threads=1)
    one_by_one = np.concatenate([artifact(converted.x[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(artifact(converted.x[:5]), one_by_one, rtol=0, atol=1e-5)
    np.testing.assert_allclose(artifact(converted.x[:3]), one_by_one[:3], rtol=0, atol=1e-5)  # resized/padded again
    with pytest.raises(DeployError, match=r"takes float32 \(N, 3, 32, 32\)"):
        artifact(converted.x[:2].transpose(0, 2, 3, 1))  # NHWC is the file's layout, not the call's
    with pytest.raises(DeployError, match="float32"):
        artifact(converted.x[:2].astype(np.float64))


def test_metadata_travels_inside_the_file(converted: Converted) -> None:
    for precision, path in converted.paths.items():
        artifact = load_artifact(path)
        meta = artifact.metadata()
        expected = {**converted.metadata, "precision": precision, "input_layout": "NHWC", "converter": "onnx2tf"}
        assert {k: meta[k] for k in expected} == expected
        m = ModelMetadata.from_strings(meta)
        assert m.labels == tuple(converted.ctx.labels) and m.input_layout == "NHWC"
        assert artifact.input_spec.mean == converted.ctx.mean and artifact.input_spec.std == converted.ctx.std
        info = artifact.describe()
        assert info["format"] == ".tflite" and info["nodes"] == sum(info["ops"].values()) > 0
        assert "FLEX" not in " ".join(info["ops"]).upper()  # builtin operators only
        # The ONNX names, also as the signature an app's signature runner calls: runner(input=x)["logits"].
        assert artifact.input_spec.extra["name"] == "input" and [o["name"] for o in info["outputs"]] == ["logits"]
        signatures = artifact.interpreter.get_signature_list()
        assert signatures == {"serving_default": {"inputs": ["input"], "outputs": ["logits"]}}


def test_no_conversion_touched_the_network(converted: Converted, net_jail: Path, tmp_path: Path) -> None:
    assert net_jail.read_text() == ""
    if converted.ctx.model_name != "hsnet":
        return
    # The jail works, and onnx2tf really goes to the network without the sample file it was given.
    probe = "from onnx2tf.utils.common_functions import download_test_image_data as d; d()"
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "network access blocked by the test" in run.stderr
    assert "github.com" in net_jail.read_text() or "wasabisys" in net_jail.read_text()
    net_jail.write_text("")


def test_int8_runs_on_the_builtin_kernels_without_xnnpack(converted: Converted) -> None:
    if converted.ctx.model_name != "hsnet":
        pytest.skip("one model is enough")
    fast = load_artifact(converted.paths["int8"], threads=1)
    plain = TFLiteArtifact.load(converted.paths["int8"], threads=1, xnnpack=False)
    a, b = fast(converted.x), plain(converted.x)
    step = fast.input_spec.extra["output_quantization"]["scale"]
    # The two kernel sets round requantization differently; over HSNet's ~50 quantized layers that shifts a logit by
    # a few output steps (9 seen, mean 1.8) against a logit range of about 150 steps.
    diff = np.abs(a - b)
    assert diff.max() <= 0.1 * np.abs(a).max() and diff.mean() <= 3 * step
    r = compare_logits(
        converted.reference, b, precision="int8", stage="tflite/int8 builtin kernels", runtime=plain.runtime,
        runtime_version=plain.runtime_version, threads=1, batch=1,
    )  # fmt: skip
    assert r.passed, r.describe()
    assert plain.describe()["xnnpack"] is False


def test_threads_are_given_to_the_runtime(converted: Converted) -> None:
    psutil = pytest.importorskip("psutil")
    if converted.ctx.model_name != "ghostnet_100":
        pytest.skip("one model is enough")
    proc = psutil.Process()

    def extra_threads(threads: int) -> int:
        before = proc.num_threads()
        artifact = load_artifact(converted.paths["fp32"], threads=threads)
        artifact(converted.x[:1])
        grown = proc.num_threads() - before
        assert artifact.threads == threads
        del artifact
        return grown

    assert extra_threads(4) - extra_threads(1) >= 3  # XNNPACK's pool: one worker per extra thread


def test_a_truncated_or_foreign_file_is_one_clear_error(converted: Converted, tmp_path: Path) -> None:
    if converted.ctx.model_name != "mobilenetv2_100":
        pytest.skip("one model is enough")
    data = converted.paths["fp32"].read_bytes()
    for name, content in {"half": data[: len(data) // 2], "tail": data[:-64], "empty": b"", "text": b"hello"}.items():
        bad = tmp_path / f"{name}.tflite"
        bad.write_bytes(content)
        with pytest.raises(DeployError, match=f"{name}.tflite") as err:
            load_artifact(bad)
        assert "\n" not in str(err.value)


def test_missing_dependencies_name_the_extra_and_the_install_command(monkeypatch) -> None:
    exporter = TFLiteExporter()
    monkeypatch.setitem(sys.modules, "onnx2tf", None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps onnx2tf==1\.29\.16") as err:
        exporter.check_available(ExportOptions(precision="fp32"))
    assert "hsnet[tflite]" in str(err.value) and err.value.extra == "tflite"
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(MissingDependencyError, match=r"hsnet\[litert-torch\]"):
        exporter.check_available(ExportOptions(precision="fp32", converter="litert-torch"))
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r"hsnet\[tflite\]"):
        TFLiteArtifact.load(Path("any.tflite"))


def test_options_and_preflight_findings(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    exporter = TFLiteExporter()
    with pytest.raises(DeployError, match="litert-torch needs a fixed batch"):
        exporter.validate(ExportOptions(batch=None, converter="litert-torch"))
    with pytest.raises(DeployError, match="valid: onnx2tf, litert-torch"):
        exporter.validate(ExportOptions(converter="tflite_convert"))
    exporter.validate(ExportOptions(batch=None, precision="int8"))  # dynamic batch is supported by onnx2tf

    def graph(op: str, path: Path, batch: int | str) -> Path:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 4, 4])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, 4, 4])
        model = helper.make_model(helper.make_graph([helper.make_node(op, ["input"], ["logits"])], "g", [x], [y]))
        onnx.save(model, path)
        return path

    def findings(path: Path, batch: int | None) -> list[tuple[str, str]]:
        ctx = ExportContext(
            model_name="m", model=None, onnx_path=path, labels=["a"], mean=(0.5,), std=(0.5,),
            options=ExportOptions(batch=batch), work_dir=tmp_path,
        )  # fmt: skip
        return [(f.severity, f.message) for f in exporter.preflight(ctx)]

    found = findings(graph("Softmax", tmp_path / "softmax.onnx", "batch"), None)
    assert any(s == "warning" and "not covered by the TFLite tests: Softmax" in m for s, m in found), found
    assert any(s == "info" and "dynamic batch" in m and "[-1, H, W, C]" in m for s, m in found)
    found = findings(graph("Relu", tmp_path / "relu.onnx", 1), 1)
    assert not [m for s, m in found if s != "info"], found
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])
    s = helper.make_tensor_sequence_value_info("logits", TensorProto.FLOAT, None)
    seq = helper.make_model(
        helper.make_graph([helper.make_node("SequenceConstruct", ["input"], ["logits"])], "g", [x], [s])
    )
    onnx.save(seq, tmp_path / "seq.onnx")
    assert any(sev == "error" and "SequenceConstruct" in m for sev, m in findings(tmp_path / "seq.onnx", 1))


def test_a_failed_conversion_is_one_line_after_the_log_tail(tmp_path: Path, capfd) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    erf = helper.make_model(helper.make_graph([helper.make_node("Erf", ["input"], ["logits"])], "g", [x], [y]))
    onnx.save(erf, tmp_path / "erf.onnx")
    ctx = ExportContext(
        model_name="erf", model=None, onnx_path=tmp_path / "erf.onnx", labels=["a"], mean=(0.5,) * 3,
        std=(0.5,) * 3, options=ExportOptions(), work_dir=tmp_path,
    )  # fmt: skip
    assert any("not covered by the TFLite tests: Erf" in f.message for f in TFLiteExporter().preflight(ctx))
    with pytest.raises(DeployError, match="could not convert erf.onnx: the TFLite builtin operators lack tf.Erf"):
        TFLiteExporter().export(ctx)  # Erf is a Flex (full TensorFlow) operator, which this target does not ship
    assert "lines of the onnx2tf log" in capfd.readouterr().err
    assert not list(tmp_path.glob("*.tflite"))
    (tmp_path / "bogus.onnx").write_bytes(b"this is not an ONNX graph")
    with pytest.raises(DeployError, match="bogus.onnx: not a readable ONNX graph"):
        TFLiteExporter().export(dataclasses.replace(ctx, onnx_path=tmp_path / "bogus.onnx"))


@pytest.mark.slow
def test_litert_torch_converts_hsnet_directly(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("litert_torch")
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access blocked by the test")

    p, ctx = _context("hsnet", tmp_path, 1, converter="litert-torch")
    exporter = TFLiteExporter()
    exporter.check_available(ctx.options)
    with monkeypatch.context() as mp:  # litert-torch runs in this process: jail this process while it converts
        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        path = exporter.export(ctx)
    artifact = load_artifact(path, threads=1)
    x, _, _ = parity_images(16, SIZE, mean=p.mean, std=p.std)
    r = compare_logits(
        reference_logits(p.reference, x), artifact(np.array(x)), precision="fp32", stage="tflite/fp32",
        runtime=artifact.runtime, runtime_version=artifact.runtime_version, threads=1, batch=1,
    )  # fmt: skip
    assert r.passed and r.max_rel_error < 2e-5, r.describe()
    assert artifact.input_spec.shape == (1, SIZE, SIZE, 3) and artifact.input_spec.layout == "NHWC"
    assert artifact.metadata()["converter"] == "litert-torch"


@pytest.mark.slow
def test_trained_int8_loses_at_most_one_point_on_the_full_test_set(fmnist_checkpoint: Path, tmp_path: Path) -> None:
    from deploy.pipeline import export_model
    from deploy.prepare import prepare_model
    from hsnet.data import load_arrays
    from hsnet.data.preprocess import to_model_input

    report = export_model(
        "hsnet", targets=("tflite",), precisions=PRECISIONS, checkpoint=fmnist_checkpoint, out_dir=tmp_path,
        parity_images=64,
    )  # fmt: skip
    records = {a.precision: a for a in report.artifacts if a.target == "tflite"}
    assert sorted(records) == sorted(PRECISIONS)
    for r in records.values():
        assert r.parity.passed and r.parity.accuracy_drop is not None, r.parity.describe()
        assert r.input["layout"] == "NHWC" and r.input["dtype"] == ("int8" if r.precision == "int8" else "float32")
    manifest = json.loads(report.manifest.read_text())
    assert manifest["status"] == "ok" and all(r.path.name in manifest["files"] for r in records.values())
    record = records["int8"]

    p = prepare_model("hsnet", checkpoint=fmnist_checkpoint)
    test = load_arrays("fashion-mnist", "test")
    x = to_model_input(test.images, input_size=p.input_size, mean=p.mean, std=p.std)
    fp32 = reference_logits(p.reference, x, batch=500).argmax(1)
    int8 = load_artifact(record.path, threads=2)(x).argmax(1)
    acc32, acc8 = 100 * (fp32 == test.labels).mean(), 100 * (int8 == test.labels).mean()
    print(f"hsnet on all {len(x)} Fashion-MNIST test images: fp32 {acc32:.2f}%, TFLite int8 {acc8:.2f}%")
    assert len(x) == 10000 and acc32 > 60
    assert acc32 - acc8 <= 1.0


def test_maxpool_padding_moves_into_an_exact_zero_pad_after_relu(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from deploy.targets.tflite.rewrites import rewrite_for_tflite

    def graph(first: str, **pool) -> Path:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 9, 9])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 3, 4, 4])
        inits = [numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")]
        inits.append(numpy_helper.from_array(np.full((3, 3, 1, 1), 0.5, np.float32), "w"))
        head = {
            "Relu": helper.make_node("Relu", ["input"], ["a"], name="act"),
            "Clip": helper.make_node("Clip", ["input", "lo", "hi"], ["a"], name="act"),
            "Conv": helper.make_node("Conv", ["input", "w"], ["a"], name="act"),
        }[first]
        pool_node = helper.make_node(
            "MaxPool", ["a"], ["logits"], name="pool", kernel_shape=[3, 3], strides=[2, 2], **pool
        )
        model = helper.make_model(helper.make_graph([head, pool_node], "g", [x], [y], inits))
        path = tmp_path / f"{first}_{len(pool)}.onnx"
        onnx.save(model, path)
        return path

    x = np.random.default_rng(0).normal(size=(2, 3, 9, 9)).astype(np.float32)  # half the values are negative
    for first in ("Relu", "Clip"):
        src, dst = graph(first, pads=[1, 1, 1, 1]), tmp_path / f"{first}_rewritten.onnx"
        applied, left = rewrite_for_tflite(src, dst)
        assert applied == [f"MaxPool pool (pads [1, 1, 1, 1]) after {first} act"] and left == []
        ops = [n.op_type for n in onnx.load(dst).graph.node]
        assert ops == [first, "Pad", "MaxPool"]
        run = {p: ort.InferenceSession(str(p)).run(None, {"input": x})[0] for p in (src, dst)}
        np.testing.assert_array_equal(run[src], run[dst])  # a max over the same values: bit for bit
    for first, pool in (("Conv", {"pads": [1, 1, 1, 1]}), ("Relu", {"pads": [1, 1, 1, 1], "ceil_mode": 1})):
        applied, left = rewrite_for_tflite(graph(first, **pool))
        assert applied == [] and left == ["pool"]  # a possibly negative input, or ceil mode: left alone


@pytest.mark.slow
@pytest.mark.parametrize("remote", [None, "qemu:cortex-a76"])
def test_int8_tune_converts_each_filling_and_keeps_the_cheapest_where_it_runs(remote, request, tmp_path) -> None:
    # Whole files (one converter run per variant): every grouped convolution filled to 8, 4, 2 and 1 groups,
    # timed in LiteRT here or counted on the emulated device; the kept file is the cheapest when >5 % cheaper.
    from click.testing import CliRunner

    from hsnet.cli import main

    if remote is not None:
        request.getfixturevalue("emulated")
    out = tmp_path / "tuned"
    args = ["deploy", "export", "--model", "hsnet", "--target", "tflite", "--precision", "int8", "--input-size",
            str(SIZE), "--num-classes", "10", "--tune", "--parity-images", "16", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args + (["--remote", remote] if remote else []))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    record = next(a for a in manifest["artifacts"] if a["target"] == "tflite")
    tuning = record["tuning"]
    assert set(tuning["variants"]) == {"8", "4", "2", "1"} and tuning["layers_changed"] == {"8": 0, "4": 20, "2": 20,
                                                                                            "1": 20}  # fmt: skip
    assert tuning["unit"] == ("instructions" if remote else "ms") and (remote or "(here)") in tuning["where"]
    assert manifest["options"]["arch"] == ("aarch64" if remote else "x86_64")
    costs = {int(g): c for g, c in tuning["variants"].items()}
    best = min(costs, key=costs.__getitem__)
    assert tuning["groups_after"] == (best if costs[8] / costs[best] > 1.05 else 8)
    artifact = TFLiteArtifact.load(out / record["file"], threads=1)
    assert json.loads(artifact.metadata()["tuning"]) == tuning
    assert _grouped_conv2d(artifact) == (20 if tuning["groups_after"] > 1 else 0)
    assert record["parity"]["passed"]
