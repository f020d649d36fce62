"""``hsnet deploy export --onnx model.onnx``: an ONNX classifier the user already has (exported by their own code,
with their own input and output names), through ONNX fp32/fp16 and TFLite fp32/int8 with parity against the file
itself in onnxruntime; then ``hsnet bench --artifact``; and every way the file or the options can be unusable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from deploy.errors import DeployError
from deploy.onnx_import import check_external_data, inspect_onnx
from hsnet.cli import main
from tests.deploy.test_user_model import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _export(path: Path, *, batch: int | None = None, size: int = 32, names: tuple[str, str] = ("x", "y")) -> Path:
    """The user's own ``torch.onnx.export`` call: other names than hsnet's, a symbolic or fixed batch."""
    dynamic = None if batch else {names[0]: {0: "n"}, names[1]: {0: "n"}}
    torch.onnx.export(build(), (torch.zeros(batch or 1, 3, size, size),), str(path), input_names=[names[0]],
                      output_names=[names[1]], dynamic_axes=dynamic, dynamo=False, opset_version=17)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user-onnx")
    _export(folder / "mine.onnx")
    _export(folder / "fixed.onnx", batch=1)
    np.save(folder / "imgs.npy", np.random.default_rng(0).integers(0, 256, (24, 40, 40, 3), dtype=np.uint8))
    return folder


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_inspect_reads_the_users_graph(users: Path) -> None:
    src = inspect_onnx(users / "mine.onnx")
    assert (src.in_chans, src.input_size, src.batch, src.num_classes, src.opset) == (3, 32, None, 5, 17)
    assert (src.input_name, src.output_name) == ("x", "y")
    assert inspect_onnx(users / "fixed.onnx").batch == 1
    assert check_external_data(users / "mine.onnx") == []


@pytest.mark.slow
def test_export_from_onnx_to_onnx_and_tflite_with_parity_against_the_file(users: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _cli("deploy", "export", "--onnx", users / "mine.onnx", "--target", "all", "--precision",
                  "fp32,fp16,int8", "--images", users / "imgs.npy", "--labels", "a,b,c,d,e", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "parity: each artifact vs mine.onnx run by onnxruntime" in result.stdout
    assert "(counted from the graph)" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    got = {(a["target"], a["precision"]) for a in manifest["artifacts"]}
    assert got == {("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "fp16"),
                   ("tflite", "int8")}  # fmt: skip
    parity = {(p["stage"], p["precision"]): p for p in manifest["parity"]}
    assert parity[("onnx/fp32", "fp32")]["max_abs_error"] <= 1e-5  # the simplified graph computes what the file does
    assert parity[("tflite/fp32", "fp32")]["max_rel_error"] < 1e-5
    assert parity[("tflite/int8", "int8")]["passed"] and parity[("tflite/int8", "int8")]["images"] == 24
    sha = __import__("hashlib").sha256((users / "mine.onnx").read_bytes()).hexdigest()
    assert manifest["weights"] == f"onnx sha256:{sha}" and manifest["source_onnx"]["sha256"] == sha
    assert manifest["labels"] == list("abcde") and manifest["input"]["shape"] == [-1, 3, 32, 32]
    assert manifest["graph"]["params"] == 10_565 and "cross_check" not in manifest["graph"]
    assert any(f["target"] == "coreml" and "skipped" in f["message"] for f in manifest["findings"])
    # The artifact is an hsnet artifact now: standard names and metadata, measured by the bench beside the zoo.
    art = onnx.load(str(out / "mine_fp32.onnx"))
    assert [i.name for i in art.graph.input] == ["input"] and [o.name for o in art.graph.output] == ["logits"]
    bench = _cli("bench", "--artifact", out / "mine_int8.tflite", "--runs", "16", "--rounds", "4", "--processes", "1",
                 "--json", tmp_path / "b.json")  # fmt: skip
    assert bench.exit_code == 0, bench.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert (row["model"], row["precision"], row["status"], row["input_size"]) == ("mine", "int8", "ok", 32)


def test_a_fixed_batch_is_kept_and_coreml_is_refused_by_name(users: Path, tmp_path: Path) -> None:
    import deploy

    report = deploy.convert_onnx_file(users / "fixed.onnx", out_dir=tmp_path / "fixed", parity_images=8)
    (a,) = report.artifacts
    assert a.input["shape"] == [1, 3, 32, 32] and a.parity.passed and a.parity.max_abs_error <= 1e-5
    with pytest.raises(DeployError, match="has a fixed batch of 1; batch 4 needs a graph exported with it"):
        deploy.convert_onnx_file(users / "fixed.onnx", out_dir=tmp_path / "b4", batch=4, parity_images=8)
    for target, message in (("coreml", "target coreml converts the PyTorch module"),
                            ("pt2", "target pt2 converts the PyTorch module")):  # fmt: skip
        result = _cli(
            "deploy", "export", "--onnx", users / "fixed.onnx", "--target", target, "--out", tmp_path / target
        )
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert not (tmp_path / target).exists()
    result = _cli("deploy", "export", "--onnx", users / "fixed.onnx", "--target", "tflite", "--converter",
                  "litert-torch", "--out", tmp_path / "lt")  # fmt: skip
    assert result.exit_code == 2 and "tflite via litert-torch converts the PyTorch module" in result.stderr


def _external(folder: Path, location: str) -> Path:
    """A valid model whose weight tensor says its bytes live at ``location``."""
    model = onnx.load(str(folder / "mine.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    path = folder / f"ext-{abs(hash(location))}.onnx"
    onnx.save(model, str(path))
    return path


def _square(folder: Path) -> Path:
    path = folder / "wide.onnx"
    model = onnx.load(str(folder / "mine.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 48
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda d: d / "none.onnx", (), "none.onnx: no such ONNX file"),
        (lambda d: (d / "text.onnx").write_text("hello, I am not a model\n") and d / "text.onnx", (),
         "text.onnx is not a readable ONNX model"),
        (lambda d: (d / "cut.onnx").write_bytes((d / "mine.onnx").read_bytes()[:3000]) and d / "cut.onnx", (),
         "cut.onnx is not a readable ONNX model"),
        (lambda d: _external(d, "/etc/passwd"), (), "keeps its data at '/etc/passwd', outside the model's folder"),
        (lambda d: _external(d, "../../secret.bin"), (), "outside the model's folder"),
        (lambda d: _external(d, "weights.bin"), (), "keeps its data in 'weights.bin', which does not exist"),
        (_square, (), "is 32x48; hsnet deploys square inputs only"),
        (lambda d: d / "mine.onnx", ("--model", "ghostnet_100"), "--onnx takes the model, its input size and opset "
         "from the file; drop --model"),
        (lambda d: d / "mine.onnx", ("--input-size", "64"), "drop --input-size"),
        (lambda d: d / "mine.onnx", ("--labels", "a,b"), "2 labels given for 5 logits"),
        (lambda d: d / "mine.onnx", ("--mean", "0.5"), "mean and std need 3 values"),
        (lambda d: d / "mine.onnx", ("--bisect",), "bisect maps layers of the PyTorch module"),
    ],
)  # fmt: skip
def test_unusable_files_and_options_exit_2_with_one_line_and_no_folder(
    users: Path, tmp_path: Path, make, extra: tuple[str, ...], message: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for f in users.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    path = make(folder)
    result = _cli("deploy", "export", "--onnx", path, *extra, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
