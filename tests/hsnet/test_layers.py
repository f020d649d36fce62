import pytest
import torch
from torch import nn

from hsnet.layers import ConvBNAct, channel_shuffle, make_divisible, reparameterize_model
from hsnet.layers.eca import ECA, eca_kernel_size
from hsnet.layers.ghost import GhostModule
from hsnet.layers.hetconv import HetConv, ImprovedHetConv
from tests.conftest import randomize_bn


def _fused_agrees(module: nn.Module, x: torch.Tensor) -> nn.Module:
    randomize_bn(module)
    module.eval()
    fused = reparameterize_model(module)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), module(x), atol=1e-5, rtol=1e-5)
    return fused


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_conv_bn_act_fuse_is_exact(groups):
    _fused_agrees(ConvBNAct(16, 32, 3, 2, groups=groups), torch.randn(2, 16, 9, 9))


def test_fuse_is_idempotent_and_leaves_original_untouched():
    m = ConvBNAct(8, 8, 3)
    fused = _fused_agrees(m, torch.randn(1, 8, 5, 5))
    assert isinstance(m.bn, nn.BatchNorm2d)  # reparameterize_model works on a copy by default
    weight = fused.conv.weight.clone()
    reparameterize_model(fused, inplace=True)
    assert torch.equal(fused.conv.weight, weight)


@pytest.mark.parametrize("stride", [1, 2])
def test_hetconv_matches_its_definition_and_fuses(stride):
    m = HetConv(16, 32, stride=stride, part=4).eval()
    randomize_bn(m)
    x = torch.randn(2, 16, 8, 8)
    # definition: one BN-ReLU after the sum of a grouped 3x3 (P groups) and a dense 1x1 convolution
    expected = torch.relu(m.bn(nn.functional.conv2d(x, m.gwc.weight, None, stride, 1, 1, 4)
                               + nn.functional.conv2d(x, m.pwc.weight, None, stride)))  # fmt: skip
    torch.testing.assert_close(m(x), expected)
    assert m.gwc.weight.shape == (32, 4, 3, 3) and m.pwc.weight.shape == (32, 16, 1, 1)
    _fused_agrees(m, x)


def test_hetconv_rejects_part_that_does_not_divide():
    with pytest.raises(ValueError, match="part P=3 must divide"):
        HetConv(16, 32, part=3)


def test_improved_hetconv_uses_a_ghost_module_for_the_pointwise_part():
    m = ImprovedHetConv(32, 64, stride=2, part=8)
    assert isinstance(m.ghost, GhostModule)
    # the Ghost branch's primary pointwise conv computes only half the outputs
    assert m.ghost.primary_conv.conv.weight.shape == (32, 32, 1, 1)
    y = m(torch.randn(2, 32, 8, 8))
    assert y.shape == (2, 64, 4, 4)
    _fused_agrees(m, torch.randn(2, 32, 8, 8))


@pytest.mark.parametrize("out_chs", [16, 17])
def test_ghost_module_trims_to_out_channels(out_chs):
    m = GhostModule(8, out_chs)
    assert m(torch.randn(1, 8, 4, 4)).shape == (1, out_chs, 4, 4)
    _fused_agrees(m, torch.randn(1, 8, 4, 4))


@pytest.mark.parametrize(("channels", "k"), [(16, 3), (64, 3), (72, 3), (128, 5), (256, 5), (512, 5), (2048, 7)])
def test_eca_adaptive_kernel_size(channels, k):
    assert eca_kernel_size(channels) == k
    assert ECA(channels).conv.kernel_size == (k,)


def test_eca_is_a_channel_wise_gate_across_neighbouring_channels():
    m = ECA(64)
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        pooled = x.mean((2, 3))
        w = m.conv.weight.flatten()
        padded = nn.functional.pad(pooled, (1, 1))
        gate = torch.sigmoid(sum(w[i] * padded[:, i : i + 64] for i in range(3)))
        torch.testing.assert_close(m(x), x * gate[:, :, None, None])
    with pytest.raises(ValueError, match="odd"):
        ECA(64, kernel_size=4)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize(
    ("value", "divisor", "expected"), [(16, 8, 16), (36, 8, 40), (7.2, 4, 8), (3, 8, 8), (91, 8, 88)]
)
def test_make_divisible(value, divisor, expected):
    assert make_divisible(value, divisor) == expected
