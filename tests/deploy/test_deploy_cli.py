"""``hsnet deploy``: bad input gives one line and a non-zero exit, never a traceback or a partial artifact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import hsnet
from hsnet.checkpoint import Checkpoint, save_checkpoint
from hsnet.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["deploy", *map(str, args)], catch_exceptions=False)

    return invoke


def one_error_line(result, *fragments: str, code: int = 2) -> None:
    """Exit ``code`` (2: bad input, 1: a failed check), a single ``Error: ...`` line naming what was wrong, no
    traceback."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real hsnet checkpoint of squeezenet1_1 with 10 classes at 32x32."""
    path = tmp_path_factory.mktemp("ckpt") / "squeezenet.pt"
    model = hsnet.create_model("squeezenet1_1", num_classes=10)
    save_checkpoint(path, Checkpoint(
        model="squeezenet1_1", num_classes=10, input_size=32, in_chans=3, classes=[f"c{i}" for i in range(10)],
        mean=[0.5] * 3, std=[0.25] * 3, state_dict=model.state_dict(),
    ))  # fmt: skip
    return path


def test_export_json_report(run, tmp_path) -> None:
    result = run("export", "--model", "squeezenet1_1", "--input-size", "32", "--num-classes", "10",
                 "--parity-images", "4", "--out", tmp_path, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (artifact,) = report["artifacts"]
    assert artifact["file"] == "squeezenet1_1_fp32.onnx" and artifact["parity"]["passed"]
    assert report["manifest"] == str(tmp_path / "manifest.json")


def test_export_table_says_what_measured_each_figure(run, tmp_path) -> None:
    result = run("export", "--model", "squeezenet1_1", "--input-size", "32", "--num-classes", "10",
                 "--parity-images", "4", "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("onnx "))
    assert "onnxruntime" in row and "1 threads, batch 1, fp32" in row
    assert "4 Fashion-MNIST test images resized to 32x32" in result.stdout and "onnxsim" in result.stdout


def test_corrupted_checkpoint(run, tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(4096))
    one_error_line(run("export", "--model", "squeezenet1_1", "--checkpoint", bad, "--out", tmp_path / "o"),
                   "bad.pt", "corrupt")  # fmt: skip
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_truncated_checkpoint(run, checkpoint, tmp_path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    one_error_line(run("export", "--model", "squeezenet1_1", "--checkpoint", cut, "--out", tmp_path / "o"),
                   "cut.pt", "truncated")  # fmt: skip


def test_checkpoint_of_another_model_or_class_count(run, checkpoint, tmp_path) -> None:
    one_error_line(run("export", "--model", "hsnet", "--checkpoint", checkpoint, "--out", tmp_path),
                   "holds model 'squeezenet1_1', not 'hsnet'")  # fmt: skip
    one_error_line(run("export", "--model", "squeezenet1_1", "--checkpoint", checkpoint, "--num-classes", "5",
                       "--out", tmp_path), "has 10 classes", "not the 5")  # fmt: skip


def test_unsupported_precision_and_options(run, tmp_path) -> None:
    one_error_line(run("export", "--model", "hsnet", "--target", "coreml", "--precision", "int8", "--out", tmp_path),
                   "target coreml does not support precision 'int8'; valid: fp32, fp16")  # fmt: skip
    one_error_line(run("export", "--model", "hsnet", "--target", "onnx,tensorrt", "--out", tmp_path),
                   "unknown target 'tensorrt'", "all")  # fmt: skip
    one_error_line(run("export", "--model", "hsnet", "--batch", "2", "--dynamic-batch", "--out", tmp_path),
                   "--batch and --dynamic-batch")  # fmt: skip
    one_error_line(run("export", "--model", "hsnett", "--out", tmp_path), "unknown model 'hsnett'", "did you mean")
    one_error_line(run("export", "--model", "hsnet", "--opset", "13", "--out", tmp_path), "opset 13", "17..20")
    assert not any(tmp_path.iterdir())  # all refused before any work


def test_calibration_of_the_wrong_shape(run, tmp_path) -> None:
    np.save(tmp_path / "calib.npy", np.zeros((8, 32, 32), np.float32))
    one_error_line(run("export", "--model", "hsnet", "--target", "tflite", "--precision", "int8", "--calibration",
                       tmp_path / "calib.npy", "--out", tmp_path / "o"),
                   "calib.npy", "shape (8, 32, 32)", "expected float32 (N, C, H, W)")  # fmt: skip
    one_error_line(run("export", "--model", "hsnet", "--calibration", tmp_path / "calib.npy", "--out", tmp_path / "o"),
                   "only used for int8")  # fmt: skip


def test_unwritable_output_folder(run, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # works as root too, unlike chmod
    one_error_line(run("export", "--model", "squeezenet1_1", "--out", blocker / "out"),
                   "output folder", "cannot be created", "is a file")  # fmt: skip


def test_truncated_onnx_to_verify_and_inspect(run, hsnet_onnx, tmp_path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(hsnet_onnx.read_bytes()[:100_000])
    one_error_line(run("verify", cut), "cut.onnx", "not a readable ONNX model")
    one_error_line(run("inspect", cut), "cut.onnx", "not a readable ONNX model")
    one_error_line(run("inspect", tmp_path / "missing.onnx"), "no such file")
    (tmp_path / "model.pb").write_text("x")
    one_error_line(run("inspect", tmp_path / "model.pb"), "unknown artifact format '.pb'", ".onnx")


def test_inspect_and_verify(run, hsnet_export, hsnet_onnx) -> None:
    info = json.loads(run("inspect", hsnet_onnx, "--json").stdout)
    assert info["input"]["shape"] == [1, 3, 32, 32] and info["outputs"][0]["name"] == "logits"
    assert info["metadata"]["model"] == "hsnet" and info["manifest_sha256_matches"] is True
    assert info["nodes"] == sum(info["ops"].values()) and info["ops"]["Conv"] > 50 and info["opset"] == 17
    assert info["sha256"] == hsnet_export.artifacts[0].sha256
    result = run("verify", hsnet_onnx, "--images", "8")
    assert result.exit_code == 0 and " ok" in result.stdout and "onnxruntime" in result.stdout


def test_bisect_names_the_perturbed_layer(run, hsnet_onnx, tmp_path) -> None:
    model = onnx.load(hsnet_onnx)
    target = "stages.1.0.expand.gwc.conv.weight"
    for init in model.graph.initializer:
        if init.name == target:
            w = numpy_helper.to_array(init).copy()
            w[0] = -2 * w[0]  # one filter flipped and doubled
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    broken = tmp_path / "hsnet_fp32.onnx"  # no manifest beside it: the embedded metadata must suffice
    onnx.save(model, broken)
    result = run("verify", broken, "--images", "8")
    one_error_line(result, "parity check failed", "max relative error", code=1)
    result = run("verify", broken, "--images", "8", "--bisect")
    one_error_line(result, "bisect: first divergence at module 'stages.1.0.expand.gwc.conv'",
                   "ONNX node '/stages/stages.1/stages.1.0/expand/gwc/conv/Conv'", code=1)  # fmt: skip


def test_ctrl_c_mid_export_leaves_nothing_partial(tmp_path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hsnet", "deploy", "export", "--model", "hsnet", "--input-size", "64",
           "--precision", "fp32,fp16", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # wait until the export is under way
        seen.append(line)
        if "torch.onnx.export" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)[1], None
    stderr = "".join(seen) + (rest or "")
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "Aborted!" and "Traceback" not in stderr
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert not [n for n in leftovers if n.startswith(".") or n.endswith(".partial")], leftovers
    assert "hsnet_fp16.onnx" not in leftovers  # interrupted before it could be checked
