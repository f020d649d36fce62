"""Each export rewrite computes exactly what it replaces, and removes the graph trouble it targets."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

import hsnet
from deploy.onnx_export import export_onnx
from deploy.preflight import scan_graph
from deploy.rewrites import (
    AdaptiveAvgPoolMatMul,
    ECAConv2d,
    GatherChannelShuffle,
    GhostConcat,
    apply_export_rewrites,
)
from hsnet.layers import ECA, ChannelShuffle, GhostModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (12, 4), (58, 2), (240, 3), (8, 1), (8, 8)])
def test_gather_shuffle_equals_channel_shuffle(channels: int, groups: int) -> None:
    x = torch.randn(2, channels, 5, 3)
    expected = ChannelShuffle(groups)(x)
    got = GatherChannelShuffle(channels, groups)(x)
    assert torch.equal(got, expected)  # a permutation: bit-exact
    assert sorted(GatherChannelShuffle(channels, groups).perm.tolist()) == list(range(channels))


def test_gather_shuffle_rejects_indivisible_channels() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        GatherChannelShuffle(10, 3)


@pytest.mark.parametrize("channels", [16, 72, 240, 624])
def test_eca_conv2d_equals_eca(channels: int) -> None:
    eca = ECA(channels).eval()
    with torch.no_grad():
        eca.conv.weight.normal_()
    x = torch.randn(2, channels, 4, 4)
    rewritten = ECAConv2d(eca).eval()
    assert rewritten.conv.weight.numel() == eca.conv.weight.numel()  # same parameters
    torch.testing.assert_close(rewritten(x), eca(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("size_in", "size_out"), [(1, 7), (5, 3), (7, 7), (10, 4), (3, 5), ((6, 9), (4, 2))])
def test_adaptive_pool_matmul_equals_adaptive_pool(size_in, size_out) -> None:
    hw_in = size_in if isinstance(size_in, tuple) else (size_in, size_in)
    hw_out = size_out if isinstance(size_out, tuple) else (size_out, size_out)
    x = torch.randn(2, 3, *hw_in)
    expected = nn.AdaptiveAvgPool2d(hw_out)(x)
    torch.testing.assert_close(AdaptiveAvgPoolMatMul(hw_in, hw_out)(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "counts"),
    [("hsnet", {"eca_conv1d_as_conv2d": 8, "ghost_drop_identity_slice": 20}),
     ("shufflenetv2_100", {"channel_shuffle_gather": 16}), ("cifar_shufflenetv1", {"channel_shuffle_gather": 16}),
     ("ghostnet_100", {"ghost_drop_identity_slice": 32})],
)  # fmt: skip
def test_rewritten_models_compute_the_same(name: str, counts: dict[str, int]) -> None:
    model = hsnet.reparameterize_model(hsnet.create_model(name, num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        applied = apply_export_rewrites(model, (1, 3, 32, 32))
        after = model(x)
    assert Counter(a.rewrite for a in applied) == counts
    assert not any(isinstance(m, (ChannelShuffle, ECA, GhostModule)) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("out_chs", "ratio", "swapped"), [(16, 2, True), (18, 3, True), (7, 2, False)])
def test_ghost_without_its_identity_slice(out_chs: int, ratio: int, swapped: bool) -> None:
    ghost = hsnet.reparameterize_model(GhostModule(8, out_chs, ratio=ratio))
    net = nn.Sequential(ghost).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        before = net(x)
        applied = apply_export_rewrites(net, (1, 8, 6, 6))
        after = net(x)
    assert (applied != []) is swapped and isinstance(net[0], GhostConcat) is swapped
    assert torch.equal(after, before) and after.shape[1] == out_chs


def test_models_without_trouble_are_left_alone() -> None:
    model = hsnet.create_model("mobilenetv2_100", num_classes=10).eval()
    assert apply_export_rewrites(model, (1, 3, 32, 32)) == []


@pytest.mark.parametrize(
    ("module", "trouble"),
    [(ChannelShuffle(4), "high_rank"), (ECA(64), "conv1d")],
)
def test_rewrites_remove_the_graph_trouble_preflight_reports(module: nn.Module, trouble: str, tmp_path) -> None:
    """The original forms export a rank-5 transpose / a 1-D conv (pre-flight sees them); the rewrites do not."""
    net = nn.Sequential(nn.Conv2d(3, 64, 1), module).eval()
    export_onnx(net, tmp_path / "before.onnx", input_shape=(1, 3, 8, 8))
    before = scan_graph(tmp_path / "before.onnx")
    applied = apply_export_rewrites(net, (1, 3, 8, 8))
    export_onnx(net, tmp_path / "after.onnx", input_shape=(1, 3, 8, 8))
    after = scan_graph(tmp_path / "after.onnx")
    assert len(applied) == 1
    assert getattr(before, trouble) and not after.high_rank and not after.conv1d
    if trouble == "high_rank":
        assert "Transpose" in {op for _, op, rank in before.high_rank if rank == 5}
        assert after.ops.get("Gather") == 1
