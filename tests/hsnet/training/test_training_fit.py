"""hsnet.training.fit on real Fashion-MNIST: it learns, writes its run folder, refuses to clobber, resumes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from hsnet.checkpoint import load_checkpoint, load_model
from hsnet.training import RunError, config_from_dict, evaluate_checkpoint, fit, make_config, resume_config
from hsnet.training.fit import RUN_FILES

METRIC_KEYS = {
    "epoch", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "lr", "images_per_s",
    "train_time_s", "epoch_time_s", "total_time_s", "device", "machine", "threads", "world_size",
}  # fmt: skip


def _tiny(**overrides):
    """A seconds-long run: 128 training images, 64 test images, one epoch."""
    values = {"epochs": 1, "subset": 128, "test_subset": 64, "batch_size": 32, "warmup_epochs": 0, **overrides}
    return make_config("fashion-quick", **values)


def test_short_real_run_learns_and_records_everything(fmnist_checkpoint):
    run = fmnist_checkpoint.parent
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    ckpt = load_checkpoint(fmnist_checkpoint)
    assert ckpt.metrics["test_top1"] >= 70.0, ckpt.metrics  # chance is 10 %
    assert ckpt.metrics["test_top5"] >= 97.0
    assert (ckpt.model, ckpt.num_classes, ckpt.input_size, ckpt.in_chans) == ("hsnet", 10, 32, 3)
    assert ckpt.classes[0] == "T-shirt/top" and ckpt.classes[9] == "Ankle boot"
    assert ckpt.mean == pytest.approx([0.2860406] * 3) and ckpt.std == pytest.approx([0.3530242] * 3)

    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(set(r) == METRIC_KEYS for r in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["total_time_s"] == pytest.approx(history[0]["epoch_time_s"] + history[1]["epoch_time_s"])
    assert ckpt.metrics["history"] == history
    assert ckpt.metrics["best_top1"] == max(r["test_top1"] for r in history)

    config = json.loads((run / "config.json").read_text())
    assert config == ckpt.config
    assert config_from_dict(config).model == "hsnet"
    for png in ("curves.png", "confusion.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.reader((run / "confusion.csv").open()))
    assert rows[0][1:] == ckpt.classes
    last = load_checkpoint(run / "last.pt")
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == 2000
    # The final confusion matrix is the last epoch's evaluation.
    diag = sum(int(rows[1 + i][1 + i]) for i in range(10))
    assert 100.0 * diag / 2000 == pytest.approx(last.metrics["test_top1"])


def test_evaluating_the_checkpoint_reproduces_its_recorded_accuracy(fmnist_checkpoint):
    ckpt = load_checkpoint(fmnist_checkpoint)
    # Same 2000 class-balanced test images as during training (subset seed = run seed = 0).
    report = evaluate_checkpoint(fmnist_checkpoint, "fashion-mnist", subset=2000, show_progress=False)
    assert report.result.top1 == pytest.approx(ckpt.metrics["test_top1"], abs=1e-9)
    assert report.result.top5 == pytest.approx(ckpt.metrics["test_top5"], abs=1e-9)
    model, _ = load_model(fmnist_checkpoint, model="hsnet", num_classes=10)
    assert not model.training


def test_resuming_a_finished_run_trains_nothing(fmnist_checkpoint, tmp_path):
    run = shutil.copytree(fmnist_checkpoint.parent, tmp_path / "run")
    before = (run / "last.pt").read_bytes()
    (run / "confusion.png").unlink()
    config = resume_config(run)
    result = fit(config, run, resume=True, show_progress=False)
    assert (run / "last.pt").read_bytes() == before
    assert (run / "confusion.png").is_file()
    assert len(result.history) == 2


def test_existing_run_is_refused_without_overwrite(fmnist_checkpoint, tmp_path):
    run = shutil.copytree(fmnist_checkpoint.parent, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(RunError, match="already holds a run .*--resume.*--overwrite"):
        fit(_tiny(), run, show_progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_overwrite_replaces_only_the_runs_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / "last.pt").write_bytes(b"old")
    result = fit(_tiny(), run, overwrite=True, show_progress=False)
    assert (run / "notes.txt").read_text() == "mine"
    assert load_checkpoint(run / "last.pt").epoch == 1
    assert len(result.history) == 1


def test_resume_with_nothing_to_resume(tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        resume_config(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="nothing to resume"):
        fit(_tiny(), tmp_path / "empty", resume=True, show_progress=False)


def test_resume_refuses_settings_that_would_change_the_run(fmnist_checkpoint, tmp_path):
    run = shutil.copytree(fmnist_checkpoint.parent, tmp_path / "run")
    with pytest.raises(RunError, match="lr cannot change"):
        resume_config(run, lr=0.5)
    assert resume_config(run, epochs=3, threads=1).epochs == 3
