"""ONNX int8: static QDQ on real calibration images, and the filling of grouped convolutions, which must leave
the outputs bit-identical to the plain QDQ model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from deploy.targets.onnx import session_options
from deploy.targets.onnx.int8 import fill_grouped_convs, grouped_convs, quantize_qdq
from hsnet.toolbox.machine import cpu_flags

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Where the CPU has VNNI, onnxruntime's u8s8 kernels accumulate in int32 without saturating, so the filled model
#: must equal the plain one bit for bit. Without it the u8s8 products can overflow int16 intermediate sums
#: (onnxruntime #12088), the zeros can change which saturate, and the export keeps the plain model (checked).
EXACT = bool({"avx512_vnni", "avx_vnni"} & set(cpu_flags()))


class Grouped(nn.Module):
    """Every convolution kind around two grouped ones (4 and 8 groups), like HSNet's heterogeneous blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.g4 = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.g8 = nn.Conv2d(32, 16, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.dw(torch.relu(self.g4(x))))
        x = torch.relu(self.pw(torch.relu(self.g8(x))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    d = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    torch.onnx.export(Grouped().eval(), (torch.zeros(1, 3, 16, 16),), str(d / "g.onnx"), input_names=["input"],
                      output_names=["logits"], dynamo=False, opset_version=17)  # fmt: skip
    calibration = np.random.default_rng(0).normal(size=(12, 3, 16, 16)).astype(np.float32)
    return quantize_qdq(d / "g.onnx", d / "g_qdq.onnx", calibration, batch=1), calibration


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def test_filling_is_bit_identical_to_plain_qdq(qdq: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    plain, _ = qdq
    found = grouped_convs(onnx.load(str(plain)))
    assert sorted(c["groups"] for c in found) == [4, 8]  # the depthwise convolution is left alone
    x = np.random.default_rng(1).normal(size=(20, 3, 16, 16)).astype(np.float32)
    want = _run(plain, x)
    for target, after in ((1, [1, 1]), (2, [2, 2]), (4, [4, 4])):
        out = tmp_path / f"filled{target}.onnx"
        changed = fill_grouped_convs(plain, out, target_groups=target)
        assert sorted(c["groups_after"] for c in changed) == (after if target < 4 else [4])
        assert np.array_equal(_run(out, x), want) or not EXACT, target
    # The merged weights are block-diagonal: each output channel keeps its own group's inputs, zeros elsewhere.
    model = onnx.load(str(tmp_path / "filled1.onnx"))
    (g8,) = [c for c in grouped_convs(onnx.load(str(plain))) if c["groups"] == 8]
    merged = next(t for t in model.graph.initializer if t.name == g8["weight"].name)
    w = numpy_helper.to_array(merged)
    assert w.shape == (16, 32, 3, 3) and np.count_nonzero(w[0, 4:]) == 0 and np.count_nonzero(w[2, :4]) == 0


@pytest.mark.parametrize(("arch", "groups"), [("x86_64", 1), ("aarch64", 4)])
def test_onnx_int8_export_through_the_pipeline(arch: str, groups: int, tmp_path: Path) -> None:
    # The family's group count (FILL_GROUPS: x86-64 one group, aarch64 four, as measured), bit-identical or not kept.
    import onnx

    from deploy import export_model, load_artifact
    from deploy.targets.onnx.int8 import FILL_GROUPS

    assert FILL_GROUPS == {"x86_64": 1, "aarch64": 4}
    report = export_model("hsnet", targets=("onnx",), precisions=("fp32", "int8"), input_size=32, num_classes=10,
                          out_dir=tmp_path, parity_images=32, arch=arch)  # fmt: skip
    int8 = next(a for a in report.artifacts if a.precision == "int8")
    assert int8.parity.passed and int8.parity.images == 32 and int8.parity.top1_agreement >= 0.9
    meta = load_artifact(int8.path).metadata()
    filled = json.loads(meta["int8_filled"])
    assert meta["precision"] == "int8"
    if filled:
        assert f"20 grouped convolution(s) filled to {groups} group(s) for {arch} (bit-identical" in meta["int8"]
        assert len(filled) == 20
        convs = {n.name: n for n in onnx.load(str(int8.path)).graph.node if n.op_type == "Conv"}
        assert {next(a.i for a in convs[name].attribute if a.name == "group") for name in filled} == {groups}
    else:  # the check at export found a difference and kept the plain QDQ model
        assert not EXACT and "was not bit-identical here, so not applied" in meta["int8"]
    manifest = json.loads(report.manifest.read_text())
    assert manifest["options"]["calibration"] == "128 Fashion-MNIST train images"  # real images, not noise
    assert manifest["options"]["arch"] == arch
