"""``kill -9`` at random moments, then ``--resume``: the finished run has the same weights, bit for bit.

Real processes, real SIGKILL: the first kill lands shortly after the first checkpoint appears (inside the next
epoch or while its files are written), the second at a random moment of the resumed process (data loading,
training, evaluation or a checkpoint write). The seed of the random moments is printed on failure.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hsnet.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# Tiny but complete: HSNet with dropout (so the RNG state must be restored), augmentation, a cosine schedule
# stepped per iteration, momentum, and a best.pt that changes over epochs.
ARGS = [
    "--recipe", "fashion-quick", "--model", "hsnet", "--input-size", "32", "--subset", "192", "--test-subset",
    "96", "--batch-size", "32", "--epochs", "3", "--warmup-epochs", "0.5", "--seed", "7", "--threads", "1",
]  # fmt: skip


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hsnet", "train", *ARGS, "--out", str(out), *extra]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _kill_at(cmd: list[str], when) -> int:  # noqa: ANN001 - when(proc, start) -> bool
    """Start ``cmd`` and SIGKILL it as soon as ``when`` says so (or let it finish); returns its exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while proc.poll() is None:
        if when(start):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    return proc.wait(timeout=600)


def _same_state(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.epoch == cb.epoch
    assert ca.state_dict.keys() == cb.state_dict.keys()
    for k in ca.state_dict:
        assert torch.equal(ca.state_dict[k], cb.state_dict[k]), f"{k} differs"
    for sa, sb in zip(ca.optimizer["state"].values(), cb.optimizer["state"].values(), strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert ca.scheduler == cb.scheduler
    keys = ("train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "lr")
    assert [[r[k] for k in keys] for r in ca.metrics["history"]] == [
        [r[k] for k in keys] for r in cb.metrics["history"]
    ]


def test_kill_9_anywhere_then_resume_gives_identical_weights(tmp_path):
    # The uninterrupted reference runs alongside (one thread each, as in the interrupted run: same arithmetic).
    reference = tmp_path / "reference"
    ref_proc = subprocess.Popen(_cmd(reference), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "interrupted"
    delay = rng.uniform(0.0, 0.6)
    first_seen: list[float] = []

    def after_first_checkpoint(start: float) -> bool:
        if (out / "last.pt").exists() and not first_seen:
            first_seen.append(time.monotonic() - start)
        return bool(first_seen) and time.monotonic() - start >= first_seen[0] + delay

    code = _kill_at(_cmd(out), after_first_checkpoint)
    # The resumed process needs start-up plus two epochs: about 1.5x the time to the first checkpoint.
    second = rng.uniform(0.0, 1.5 * first_seen[0]) if first_seen else 0.0
    note = f"(random seed {seed}: first kill {delay:.2f} s after last.pt appeared, second at {second:.2f} s)"
    if code == 0:
        pytest.fail(f"the run finished before it could be killed {note}")
    assert code == -signal.SIGKILL, note
    assert load_checkpoint(out / "last.pt").epoch >= 1, note

    code = _kill_at(_cmd(out, "--resume"), lambda start: time.monotonic() - start >= second)
    assert code in (0, -signal.SIGKILL), note
    _run(_cmd(out, "--resume"))
    assert ref_proc.wait(timeout=600) == 0, ref_proc.stderr.read()[-3000:]
    assert not list(out.glob(".*.partial")), note
    _same_state(out / "last.pt", reference / "last.pt")
    _same_state(out / "best.pt", reference / "best.pt")
    assert (out / "metrics.jsonl").read_text().count("\n") == 3
