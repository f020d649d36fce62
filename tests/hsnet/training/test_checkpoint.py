"""hsnet.checkpoint: weights-only round trip, refusal of code-running pickles, corrupt files, atomic writes."""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch

import hsnet
from hsnet.checkpoint import (
    FORMAT,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _checkpoint(model_name: str = "cifar_shufflenetv2", num_classes: int = 10) -> Checkpoint:
    model = hsnet.create_model(model_name, num_classes=num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    for p in model.parameters():  # gradients without a forward pass: the optimizer then holds momentum buffers
        p.grad = torch.full_like(p, 0.01)
    opt.step()
    sched.step()
    return Checkpoint(
        model=model_name,
        num_classes=num_classes,
        input_size=32,
        in_chans=3,
        classes=[f"c{i}" for i in range(num_classes)],
        mean=[0.5, 0.4, 0.3],
        std=[0.2, 0.2, 0.2],
        state_dict=model.state_dict(),
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        rng=rng_state(),
        epoch=3,
        config={"lr": 0.1, "milestones": (60, 120)},
        metrics={"test_top1": 12.5, "history": [{"epoch": 1}]},
    )


class _Payload:
    """Unpickling this runs ``touch MARKER`` through os.system."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_is_weights_only_and_exact(tmp_path):
    ckpt = _checkpoint()
    path = save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # a plain dict, loadable by anyone without our code
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["config"]["milestones"] == [60, 120]  # tuples become lists
    model, back = load_model(path)
    assert not model.training
    assert (back.model, back.num_classes, back.epoch, back.classes) == ("cifar_shufflenetv2", 10, 3, ckpt.classes)
    for k, v in ckpt.state_dict.items():
        assert torch.equal(back.state_dict[k], v), k
        assert torch.equal(model.state_dict()[k], v), k
    assert back.optimizer["param_groups"][0]["momentum"] == 0.9
    assert back.scheduler["last_epoch"] == 1
    assert back.hsnet_version == hsnet.__version__


@pytest.mark.parametrize("wrapper", ["torch_save", "raw_pickle", "nested_in_checkpoint"])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, wrapper):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = _Payload(str(marker))
    # Sanity: the payload really runs code when unpickled without protection.
    pickle.loads(pickle.dumps(payload))
    assert marker.exists()
    marker.unlink()
    if wrapper == "torch_save":
        torch.save({"format": FORMAT, "state_dict": payload}, path)
    elif wrapper == "raw_pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        data = _checkpoint().to_dict()
        data["metrics"]["evil"] = payload
        torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*refused") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_truncated_and_garbage_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _checkpoint())
    data = good.read_bytes()
    for name, content in [("half.pt", data[: len(data) // 2]), ("junk.pt", os.urandom(4096)), ("empty.pt", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")) as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value)


def test_flipped_bytes_inside_tensor_data_are_detected_or_loaded_consistently(tmp_path):
    # A zip with a damaged member must fail with CheckpointError, never with another exception type.
    good = save_checkpoint(tmp_path / "good.pt", _checkpoint())
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            content = src.read(item)
            if item.filename.endswith("data.pkl"):
                content = content[:20] + b"\xff" * 16 + content[36:]
            dst.writestr(item, content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"weights": {}}, "not an hsnet checkpoint"),
        ([1, 2, 3], "not an hsnet checkpoint"),
        ({"format": FORMAT, "format_version": 99}, "format_version 99"),
        ({"format": FORMAT, "format_version": 1, "model": "hsnet"}, "lacks the field 'num_classes'"),
    ],
)
def test_wrong_content(tmp_path, data, message):
    path = tmp_path / "x.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_inconsistent_fields(tmp_path):
    data = _checkpoint().to_dict()
    data["classes"] = data["classes"][:3]
    torch.save(data, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="names 3 classes but has num_classes=10"):
        load_checkpoint(tmp_path / "x.pt")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_load_model_checks_model_and_classes(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _checkpoint())
    load_model(path, model="cifar_shufflenetv2", num_classes=10)
    with pytest.raises(CheckpointError, match="holds model 'cifar_shufflenetv2', not 'hsnet'"):
        load_model(path, model="hsnet")
    with pytest.raises(CheckpointError, match="has 10 classes .* not the 100 asked for"):
        load_model(path, num_classes=100)


def test_weights_that_do_not_fit_the_model(tmp_path):
    data = _checkpoint().to_dict()
    data["model"] = "cifar_mobilenetv2"
    torch.save(data, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="do not fit cifar_mobilenetv2"):
        load_model(tmp_path / "x.pt")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", _checkpoint())
    before = path.read_bytes()
    real_save = torch.save

    def dies_halfway(obj, f, *args, **kwargs):  # the process is interrupted while the bytes go out
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _checkpoint("cifar_shufflenetv2", 10))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind
    monkeypatch.undo()
    load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt = _checkpoint()
    ckpt.rng = state
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", ckpt))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(loaded.rng)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
