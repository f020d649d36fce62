"""``hsnet train`` and ``hsnet eval`` from the command line, bad input included: one line, exit 1, no traceback,
and no existing checkpoint damaged."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hsnet.checkpoint import load_checkpoint
from hsnet.cli import main

TINY = ["--recipe", "fashion-quick", "--epochs", "1", "--subset", "64", "--test-subset", "32", "--batch-size", "32"]


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _fails_cleanly(result, *fragments: str) -> str:
    """Exit status 2 (unusable input) and exactly one ``Error:`` line naming the fragments; no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def run_copy(fmnist_checkpoint, tmp_path) -> Path:
    return shutil.copytree(fmnist_checkpoint.parent, tmp_path / "run")


def _image_folder(root: Path, classes: int, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, size=(20, 20, 3), dtype=np.uint8)
                pixels[:, c * 6 : c * 6 + 6] = 230  # a bright stripe whose position gives the class
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_python_m_hsnet_train_help():
    proc = subprocess.run([sys.executable, "-m", "hsnet", "train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--resume" in proc.stdout and "torchrun" in proc.stdout


def test_eval_json_and_files(fmnist_checkpoint, tmp_path):
    ckpt = load_checkpoint(fmnist_checkpoint)
    result = _invoke("eval", fmnist_checkpoint, "--subset", 2000, "--json", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "hsnet" and report["dataset"] == "fashion-mnist" and report["images"] == 2000
    assert report["top1"] == pytest.approx(ckpt.metrics["test_top1"])
    assert report["top5"] >= report["top1"]
    assert set(report["per_class"]) == set(ckpt.classes)
    assert np.array(report["confusion"]).sum() == 2000
    assert "threads" in report["measured_on"] and "batch 256" in report["measured_on"]
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["confusion.csv", "confusion.png", "eval.json"]


def test_eval_table(fmnist_checkpoint, tmp_path):
    result = _invoke("eval", fmnist_checkpoint, "--dataset", "fashion-mnist", "--subset", 200, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Ankle boot" in result.stdout and "top-1" in result.stdout and "measured on cpu" in result.stdout


def test_train_and_eval_on_an_image_folder(tmp_path):
    data = _image_folder(tmp_path / "data", classes=3)
    out = tmp_path / "run"
    result = _invoke(
        "train", "--recipe", "modern", "--model", "cifar_shufflenetv2", "--dataset", "folder", "--data-dir", data,
        "--epochs", "2", "--batch-size", "6", "--lr", "0.05", "--warmup-epochs", "0", "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["history"]) == 2
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.classes == ["class0", "class1", "class2"] and ckpt.num_classes == 3
    assert len(ckpt.mean) == 3 and all(0 < s < 1 for s in ckpt.std)  # measured on the training images
    result = _invoke("eval", out / "best.pt", "--data-dir", data, "--json", "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 18


# --- bad input ---------------------------------------------------------------------------------------------


def test_missing_data_folder(tmp_path):
    result = _invoke(
        "train", *TINY, "--dataset", "cifar10", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "r"
    )
    _fails_cleanly(result, "cifar10")


def test_malformed_data_folder(tmp_path):
    data = tmp_path / "fmnist"
    shutil.copytree("/usr/share/datasets/fashion-mnist", data)
    (data / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage, not gzip")
    result = _invoke("train", *TINY, "--data-dir", data, "--out", tmp_path / "r")
    _fails_cleanly(result, "train-labels-idx1-ubyte")


def test_unknown_model_suggests_names(tmp_path):
    _fails_cleanly(_invoke("train", *TINY, "--model", "hsnett", "--out", tmp_path / "r"), "did you mean hsnet")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _fails_cleanly(_invoke("train", *TINY, "--out", blocker / "run"), "run folder", "cannot be created", "is a file")
    _fails_cleanly(
        _invoke("eval", tmp_path / "x.pt", "--out", blocker / "ev"), "x.pt"
    )  # the missing checkpoint is reported first


def test_resume_with_nothing_to_resume(tmp_path):
    _fails_cleanly(_invoke("train", "--out", tmp_path / "none", "--resume"), "nothing to resume")
    _fails_cleanly(_invoke("train", "--resume"), "--resume needs --out")


def test_existing_run_is_not_touched_without_overwrite(run_copy):
    before = _digests(run_copy)
    _fails_cleanly(_invoke("train", *TINY, "--out", run_copy), "already holds a run", "--overwrite")
    _fails_cleanly(_invoke("train", "--out", run_copy, "--resume", "--lr", "0.3"), "lr cannot change")
    _fails_cleanly(_invoke("train", "--out", run_copy, "--resume", "--recipe", "modern"), "recipe cannot change")
    _fails_cleanly(_invoke("train", "--out", run_copy, "--resume", "--overwrite"), "give one of them")
    assert _digests(run_copy) == before


def test_corrupted_checkpoint(run_copy):
    last = run_copy / "last.pt"
    last.write_bytes(last.read_bytes()[:100_000])
    before = _digests(run_copy)
    _fails_cleanly(_invoke("eval", last), "last.pt", "truncated or corrupt")
    _fails_cleanly(_invoke("train", "--out", run_copy, "--resume", "--epochs", "3"), "last.pt", "truncated or corrupt")
    assert _digests(run_copy) == before


def test_checkpoint_of_another_model_or_class_count(run_copy, tmp_path):
    # A ShuffleNet run whose last.pt is replaced by the HSNet checkpoint: resuming must refuse it.
    other = tmp_path / "other"
    assert _invoke("train", *TINY, "--model", "cifar_shufflenetv2", "--out", other).exit_code == 0
    shutil.copy(run_copy / "best.pt", other / "last.pt")
    before = _digests(other)
    _fails_cleanly(_invoke("train", "--out", other, "--resume"), "holds hsnet with 10 classes", "cifar_shufflenetv2")
    assert _digests(other) == before
    # Evaluating a 10-class checkpoint on a 3-class dataset.
    data = _image_folder(tmp_path / "data", classes=3, per_class=2)
    _fails_cleanly(_invoke("eval", run_copy / "best.pt", "--dataset", "folder", "--data-dir", data), "10 classes", "3")


def test_bad_option_values(tmp_path):
    result = _invoke("train", "--milestones", "a,b", "--out", tmp_path / "r")
    _fails_cleanly(result, "--milestones")
    result = _invoke("train", "--model-arg", "drop_rate", "--out", tmp_path / "r")
    _fails_cleanly(result, "KEY=VALUE")
    result = _invoke("train", *TINY, "--model-arg", "widths=3", "--out", tmp_path / "r")
    _fails_cleanly(result, "widths")


def test_runs_compares_run_folders(run_copy, tmp_path):
    history = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    other = shutil.copytree(run_copy, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "lr": 0.2, "threads": 2}))  # threads do not count
    plot = tmp_path / "cmp.png"
    result = _invoke("runs", run_copy, other, "--plot", plot, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["differing_settings"] == ["lr"] and report["plot"] == str(plot)
    first = report["runs"][0]
    assert first["final_top1"] == history[-1]["test_top1"] and first["epochs_done"] == len(history) == 2
    assert first["best_top1"] == max(r["test_top1"] for r in history) and first["finished"] is True
    assert first["measured_on"].startswith("cpu (") and "batch 64" in first["measured_on"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [
        p.name for p in tmp_path.iterdir() if "cmp" in p.name
    ] == ["cmp.png"]
    table = _invoke("runs", run_copy, run_copy, "--markdown")
    assert table.exit_code == 0, table.output
    assert f"| hsnet | 2/2 | {history[-1]['test_top1']:.2f} % |" in table.stdout
    assert "same recipe (fashion-quick as saved, 2 epochs) for every run" in table.stdout


def test_runs_refuses_what_is_not_a_run(run_copy, tmp_path):
    _fails_cleanly(_invoke("runs", tmp_path / "missing"), "missing is not a run folder")
    (tmp_path / "empty").mkdir()
    _fails_cleanly(_invoke("runs", tmp_path / "empty"), "empty is not a run folder: config.json is missing")
    with (run_copy / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3}\n')
    _fails_cleanly(_invoke("runs", run_copy), "metrics.jsonl line 3 is not an epoch record (no 'test_top1')")
    (run_copy / "config.json").write_text("{")
    _fails_cleanly(_invoke("runs", run_copy), "config.json is not a valid run configuration")


def _with(checkpoint: Path, out: Path, **changes) -> Path:
    """A copy of ``checkpoint`` with fields replaced (saved with torch.save, as a damaged or hostile file is)."""
    import torch

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    data.update(changes)
    torch.save(data, out)
    return out


def test_files_that_are_not_checkpoints_are_named_for_what_they_are(tmp_path):
    (tmp_path / "notes.pt").write_text("these are my notes, not weights\n")
    _fails_cleanly(_invoke("eval", tmp_path / "notes.pt", "--dataset", "fashion-mnist"), "not a file written by "
                   "torch.save: it is a text file")  # fmt: skip
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(200))
    _fails_cleanly(_invoke("eval", tmp_path / "model.onnx", "--dataset", "fashion-mnist"), "it is an ONNX model")
    (tmp_path / "empty.pt").write_bytes(b"")
    _fails_cleanly(_invoke("eval", tmp_path / "empty.pt", "--dataset", "fashion-mnist"), "it is an empty file")


def test_nan_weights_and_wrong_typed_model_args_are_refused_at_load(fmnist_checkpoint, tmp_path):
    import torch

    state = torch.load(fmnist_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    first = next(k for k, v in state.items() if v.is_floating_point())
    broken = dict(state, **{first: torch.full_like(state[first], float("nan"))})
    nan = _with(fmnist_checkpoint, tmp_path / "nan.pt", state_dict=broken)
    _fails_cleanly(_invoke("eval", nan), "1 weight tensor(s) hold NaN or inf", first)
    _fails_cleanly(_invoke("deploy", "export", "--checkpoint", nan, "--out", tmp_path / "x"), "hold NaN or inf")
    assert not (tmp_path / "x").exists()
    typed = _with(fmnist_checkpoint, tmp_path / "typed.pt", model_args={"drop_rate": "abc"})
    _fails_cleanly(_invoke("eval", typed), "drop_rate='abc': takes a float (default 0.2), got str")
    _fails_cleanly(_invoke("deploy", "export", "--checkpoint", typed, "--out", tmp_path / "y"), "takes a float")
    _fails_cleanly(_invoke("train", *TINY, "--model-arg", "drop_rate=abc", "--out", tmp_path / "r"),
                   "drop_rate='abc': takes a float")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_outputs_that_overflow_are_a_failed_check_not_a_figure(fmnist_checkpoint, tmp_path):
    import torch

    state = torch.load(fmnist_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    huge = {k: (torch.full_like(v, 3e38) if v.is_floating_point() and "weight" in k else v) for k, v in state.items()}
    path = _with(fmnist_checkpoint, tmp_path / "huge.pt", state_dict=huge)
    result = _invoke("eval", path, "--subset", "20", "--out", tmp_path / "ev")
    assert result.exit_code == 1, result.output
    assert "outputs on fashion-mnist are not finite" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "ev").exists()


def test_output_paths_are_checked_before_the_work(run_copy, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _fails_cleanly(_invoke("eval", run_copy / "best.pt", "--out", blocker / "ev"), "cannot be created", "is a file")
    _fails_cleanly(_invoke("runs", run_copy, "--plot", blocker / "p.png"), "--plot file", "cannot be created")
