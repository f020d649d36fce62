"""Bad input across every subcommand, as a matrix: each case asserts the exit status of the contract (2 unusable
input, 1 a failed check, 3 the tool could not work), exactly one ``Error:`` line naming what was wrong, no
traceback, and no file or folder left behind in the working folder.

More cases live beside the features they guard (test_user_model, test_onnx_import, test_cli_bench, test_cli_train,
test_full_disk); this file covers the breadth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hsnet.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files of every wrong kind, made once."""
    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "notes.txt").write_text("plain text, not a model\n")
    (d / "empty.pt").write_bytes(b"")
    (d / "folder").mkdir()
    (d / "blocker").write_text("a file where a folder should be")
    (d / "empty.tflite").write_bytes(b"")
    (d / "text.onnx").write_text("not protobuf\n")
    (d / "bad.json").write_text('{"kind": "hsnet-bench", "rows": [')
    (d / "list.json").write_text("[1, 2, 3]")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.onnx.export(net.eval(), (torch.zeros(1, 3, 16, 16),), str(d / "plain.onnx"), dynamo=False)
    (d / "cut.onnx").write_bytes((d / "plain.onnx").read_bytes()[:200])
    np.save(d / "strings.npy", np.array(["a", "b"]))
    np.save(d / "images3d.npy", np.zeros((4, 16, 16), dtype=np.float32))
    np.save(d / "logits.npy", np.zeros((3, 7), dtype=np.float32))
    return {p.name: p for p in d.iterdir()}


# (arguments with {file} placeholders, exit status, fragment of the one error line)
CASES = [
    # hsnet models / profile / compare
    (["profile", "nosuchmodel"], 2, "unknown model 'nosuchmodel'"),
    (["profile", "hsnett"], 2, "did you mean hsnet"),
    (["profile", "hsnet", "--input-size", "0"], 2, "--input-size"),
    (["profile", "hsnet", "--input-size", "abc"], 2, "--input-size"),
    (["profile", "hsnet", "--num-classes", "99999999"], 2, "1<=x<=100000"),
    (["profile", "hsnet", "--num-classes", "0"], 2, "--num-classes"),
    (["profile", "squeezenet1_0", "--input-size", "8"], 2, "cannot run on a 8x8 input"),
    (["compare", "--num-classes", "99999999"], 2, "1<=x<=100000"),
    (["compare", "--input-size", "-3"], 2, "--input-size"),
    (["models", "--nosuchoption"], 2, "No such option"),
    (["nosuchcommand"], 2, "No such command"),
    # hsnet train
    (["train", "--model", "hsnett", "--out", "r"], 2, "did you mean hsnet"),
    (["train", "--recipe", "nosuch", "--out", "r"], 2, "--recipe"),
    (["train", "--epochs", "0", "--out", "r"], 2, "--epochs"),
    (["train", "--lr", "abc", "--out", "r"], 2, "--lr"),
    (["train", "--batch-size", "-1", "--out", "r"], 2, "--batch-size"),
    (["train", "--milestones", "5,x", "--out", "r"], 2, "--milestones"),
    (["train", "--model-arg", "drop_rate", "--out", "r"], 2, "KEY=VALUE"),
    (["train", "--recipe", "fashion-quick", "--model-arg", "drop_rate=abc", "--out", "r"], 2, "takes a float"),
    (["train", "--recipe", "fashion-quick", "--model-arg", "nosuch=1", "--out", "r"], 2, "nosuch"),
    (["train", "--dataset", "nosuch", "--out", "r"], 2, "nosuch"),
    (["train", "--dataset", "folder", "--out", "r"], 2, "--data-dir"),
    (["train", "--dataset", "folder", "--data-dir", "{folder}", "--out", "r"], 2, "folder"),
    (["train", "--recipe", "fashion-quick", "--out", "{blocker}/run"], 2, "is a file, not a folder"),
    (["train", "--resume"], 2, "--resume needs --out"),
    (["train", "--resume", "--out", "{folder}"], 2, "nothing to resume"),
    # hsnet eval
    (["eval", "missing.pt"], 2, "does not exist"),
    (["eval", "{folder}"], 2, "folder"),
    (["eval", "{notes.txt}", "--dataset", "fashion-mnist"], 2, "it is a text file"),
    (["eval", "{empty.pt}", "--dataset", "fashion-mnist"], 2, "it is an empty file"),
    (["eval", "{plain.onnx}", "--dataset", "fashion-mnist"], 2, "it is an ONNX model"),
    (["eval", "missing.pt", "--split", "val"], 2, "--split"),
    (["eval", "missing.pt", "--subset", "0"], 2, "--subset"),
    # hsnet runs
    (["runs", "nowhere"], 2, "not a run folder"),
    (["runs", "{folder}"], 2, "not a run folder"),
    (["runs", "{notes.txt}"], 2, "not a run folder"),
    # hsnet deploy export
    (["deploy", "export", "--model", "hsnett", "--out", "o"], 2, "did you mean hsnet"),
    (["deploy", "export", "--target", "tensorrt", "--out", "o"], 2, "unknown target 'tensorrt'"),
    (["deploy", "export", "--precision", "int4", "--out", "o"], 2, "unknown precision 'int4'"),
    (["deploy", "export", "--target", "pt2", "--precision", "int8", "--out", "o"], 2, "does not support"),
    (["deploy", "export", "--opset", "9", "--out", "o"], 2, "opset 9 is not supported"),
    (["deploy", "export", "--converter", "nosuch", "--out", "o"], 2, "converter 'nosuch'"),
    (["deploy", "export", "--batch", "2", "--dynamic-batch", "--out", "o"], 2, "exclude each other"),
    (["deploy", "export", "--batch", "0", "--out", "o"], 2, "--batch"),
    (["deploy", "export", "--num-classes", "99999999", "--out", "o"], 2, "1<=x<=100000"),
    (["deploy", "export", "--input-size", "3", "--out", "o"], 2, "--input-size"),
    (["deploy", "export", "--model", "squeezenet1_0", "--input-size", "8", "--out", "o"], 2, "cannot run on a 8x8"),
    (["deploy", "export", "--checkpoint", "missing.pt", "--out", "o"], 2, "does not exist"),
    (["deploy", "export", "--checkpoint", "{notes.txt}", "--out", "o"], 2, "it is a text file"),
    (["deploy", "export", "--checkpoint", "{plain.onnx}", "--out", "o"], 2, "it is an ONNX model"),
    (
        [
            "deploy",
            "export",
            "--calibration",
            "{strings.npy}",
            "--precision",
            "int8",
            "--target",
            "tflite",
            "--out",
            "o",
        ],
        2,
        "strings.npy",
    ),  # fmt: skip
    (["deploy", "export", "--calibration", "fashion-mnist", "--out", "o"], 2, "only used for int8"),
    (["deploy", "export", "--images", "nowhere", "--out", "o"], 2, "nowhere"),
    (["deploy", "export", "--images", "{images3d.npy}", "--out", "o"], 2, "images3d.npy"),
    (["deploy", "export", "--images", "{notes.txt}", "--out", "o"], 2, "notes.txt"),
    (["deploy", "export", "--out", "{blocker}/o"], 2, "is a file, not a folder"),
    (["deploy", "export", "--parity-images", "0", "--out", "o"], 2, "--parity-images"),
    (["deploy", "export", "--labels", "a,b", "--out", "o"], 2, "describe your own network"),
    (
        ["deploy", "export", "--model", "nosuch_pkg.nets:build", "--input-shape", "1,3,32,32", "--out", "o"],
        2,
        "nosuch_pkg",
    ),  # fmt: skip
    (
        ["deploy", "export", "--model", "missing.py:build", "--input-shape", "1,3,32,32", "--out", "o"],
        2,
        "no such file",
    ),  # fmt: skip
    (["deploy", "export", "--model", "json:loads", "--out", "o"], 2, "--input-shape"),
    (["deploy", "export", "--model", "json:loads", "--input-shape", "1,3,32", "--out", "o"], 2, "input-shape"),
    (["deploy", "export", "--model", "json:1bad", "--input-shape", "1,3,32,32", "--out", "o"], 2, "module:callable"),
    (["deploy", "export", "--onnx", "missing.onnx", "--out", "o"], 2, "no such ONNX file"),
    (["deploy", "export", "--onnx", "{text.onnx}", "--out", "o"], 2, "is not a readable ONNX model"),
    (["deploy", "export", "--onnx", "{cut.onnx}", "--out", "o"], 2, "is not a readable ONNX model"),
    (
        ["deploy", "export", "--onnx", "{plain.onnx}", "--checkpoint", "{empty.pt}", "--out", "o"],
        2,
        "drop --checkpoint",
    ),
    # hsnet deploy verify / inspect
    (["deploy", "verify", "missing.onnx"], 2, "no such file"),
    (["deploy", "verify", "{notes.txt}"], 2, "unknown artifact format '.txt'"),
    (["deploy", "verify", "{cut.onnx}"], 2, "cut.onnx"),
    (["deploy", "verify", "{text.onnx}"], 2, "text.onnx"),
    (["deploy", "verify", "{empty.tflite}"], 2, "not a valid TFLite flatbuffer"),
    (["deploy", "verify", "{plain.onnx}"], 2, "metadata"),
    (["deploy", "verify", "{plain.onnx}", "--reference", "missing.npy", "--images", "{logits.npy}"], 2, "no such file"),
    (["deploy", "verify", "{plain.onnx}", "--reference", "{notes.txt}", "--images", "{logits.npy}"], 2, "--reference"),
    (["deploy", "verify", "{plain.onnx}", "--model", "hsnett"], 2, "did you mean hsnet"),
    (["deploy", "verify", "{plain.onnx}", "--count", "0"], 2, "--count"),
    (["deploy", "inspect", "missing.tflite"], 2, "no such file"),
    (["deploy", "inspect", "{empty.tflite}"], 2, "not a valid TFLite flatbuffer"),
    (["deploy", "inspect", "{cut.onnx}"], 2, "cut.onnx"),
    # hsnet bench
    (["bench", "--models", "hsnett"], 2, "did you mean hsnet"),
    (["bench", "--runtimes", "tvm"], 2, "unknown runtime 'tvm'"),
    (["bench", "--precision", "int4"], 2, "unknown precision 'int4'"),
    (["bench", "--device", "cuda"], 2, "unknown device 'cuda'"),
    (["bench", "--threads", "0"], 2, "--threads"),
    (["bench", "--threads", "a"], 2, "--threads"),
    (["bench", "--input-size", "4"], 2, "--input-size"),
    (["bench", "--num-classes", "99999999"], 2, "1<=x<=100000"),
    (["bench", "--artifact", "missing.onnx"], 2, "no such file"),
    (["bench", "--artifact", "{notes.txt}"], 2, "unknown format '.txt'"),
    (["bench", "--artifact", "{cut.onnx}"], 2, "is not a readable ONNX model"),
    (["bench", "--artifact", "{empty.tflite}"], 2, "not a valid TFLite flatbuffer"),
    (["bench", "--checkpoint", "{notes.txt}", "--models", "hsnet"], 2, "it is a text file"),
    (["bench", "--model", "nosuch_pkg.nets:build"], 2, "nosuch_pkg"),
    (["bench", "--baseline", "{bad.json}", "--models", "hsnet"], 2, "is not valid JSON"),
    (["bench", "--baseline", "{list.json}", "--models", "hsnet"], 2, "list.json"),
    (["bench", "--baseline", "{folder}", "--models", "hsnet"], 2, "holds no result files"),
    (["bench", "--fail-on-regression", "5%"], 2, "needs --baseline"),
    (["bench", "--fail-on-regression", "lots", "--baseline", "{bad.json}"], 2, "lots"),
    (["bench", "--json", "{blocker}/r.json", "--models", "hsnet"], 2, "is a file, not a folder"),
    (["bench", "--plot", "{folder}", "--models", "hsnet"], 2, "is a directory"),
    (["bench", "--markdown", "{blocker}/r.md", "--models", "hsnet"], 2, "is a file, not a folder"),
    (["bench", "--metric", "energy"], 2, "--metric"),
    (["bench", "compare", "{bad.json}", "{bad.json}"], 2, "is not valid JSON"),
    (["bench", "compare", "missing.json", "missing.json"], 2, "no such"),
    (["bench", "compare", "{list.json}", "{list.json}"], 2, "list.json"),
    (["bench", "compare", "{bad.json}", "{bad.json}", "--threshold", "-5%"], 2, "threshold"),
]


def _expand(args: list[str], files: dict[str, Path]) -> list[str]:
    out = []
    for a in args:
        for name, path in files.items():
            a = a.replace("{" + name + "}", str(path))
        out.append(a)
    return out


@pytest.mark.parametrize(("args", "code", "fragment"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input(args: list[str], code: int, fragment: str, files: dict[str, Path], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HSNET_CACHE", str(tmp_path / "cache"))
    before = sorted(p.name for p in files["notes.txt"].parent.iterdir())
    result = CliRunner().invoke(main, _expand(args, files))
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == []  # nothing left behind
    assert sorted(p.name for p in files["notes.txt"].parent.iterdir()) == before


def test_the_matrix_is_broad() -> None:
    assert len(CASES) >= 90
    commands = {tuple(a for a in c[0][:2] if not a.startswith("-") and "{" not in a)[:2] for c in CASES}
    assert len(commands) >= 12, commands
