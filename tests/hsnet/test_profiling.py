import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hsnet
from hsnet.layers import ConvBNAct
from hsnet.profiling import FLOP_CATEGORIES, KINDS, conv_kind, profile_model

MODELS = hsnet.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_macs_agree_with_torch_flop_counter(name):
    """Cross-check against an independent counter (torch.utils.flop_counter counts 2 FLOPs per MAC)."""
    model = hsnet.create_model(name).eval()
    size = min(hsnet.model_info(name).test_sizes)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    prof = profile_model(model, size)
    assert prof.macs * 2 == counter.get_total_flops()
    assert prof.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_breakdowns_add_up(name):
    prof = profile_model(hsnet.create_model(name), min(hsnet.model_info(name).test_sizes))
    assert sum(prof.macs_by_kind.values()) == prof.macs
    assert sum(prof.params_by_kind.values()) == prof.params
    assert sum(prof.flops_by_category.values()) == prof.flops
    assert sum(layer.macs for layer in prof.layers) == prof.macs
    assert sum(layer.flops for layer in prof.layers) == prof.flops
    assert sum(layer.params for layer in prof.layers) == prof.params
    assert set(prof.macs_by_kind) == set(KINDS) and set(prof.flops_by_category) == set(FLOP_CATEGORIES)


class _Tiny(nn.Module):
    """A model small enough to count by hand."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBNAct(3, 8, 3, 2)  # 8x4x4 output from 8x8
        self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.conv(x)
        y = y + self.dw(y)  # element-wise add written in forward
        return self.fc(self.pool(y).flatten(1))


def test_counts_match_a_hand_count():
    prof = profile_model(_Tiny(), 8)
    conv_macs = 8 * 4 * 4 * 3 * 9  # out elements x (in/groups x k x k)
    dw_macs = 8 * 4 * 4 * 9
    fc_macs = 8 * 5
    assert prof.macs == conv_macs + dw_macs + fc_macs
    assert prof.macs_by_kind == {"pointwise": 0, "depthwise": dw_macs, "grouped": 0, "dense": conv_macs,
                                 "linear": fc_macs, "other": 0}  # fmt: skip
    assert prof.flops_by_category == {
        "macs": prof.macs,
        "bias": 5,  # linear bias
        "batchnorm": 2 * 128,
        "activation": 128,  # ReLU
        "pooling": 128,  # one add per input element
        "elementwise": 128,  # the residual add
    }
    assert prof.params == 3 * 8 * 9 + 16 + 8 * 9 + 8 * 5 + 5
    assert prof.activations == 128 + 128 + 5
    # y, dw(y) and y + dw(y) are alive together: 3 x 128 fp32 values (input and weights excluded)
    assert prof.peak_activation_bytes == 3 * 128 * 4
    rows = {layer.name: layer for layer in prof.layers}
    assert rows["(model)"].flops == 128 and rows["(model)"].type == "_Tiny"  # the add is the model's own op
    assert rows["conv.conv"].output_shape == (1, 8, 4, 4)


def test_peak_activation_memory_counts_live_tensors_once():
    chain = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, 1, 1),
        nn.Flatten(),
        nn.Linear(256, 4),
    )
    # the 8x4x4 and 16x4x4 maps are alive together; the in-place ReLU and the flatten view add nothing
    assert profile_model(chain, 8).peak_activation_bytes == (8 * 16 + 16 * 16) * 4
    one, two = profile_model(chain, 8), profile_model(chain, 8, batch=2)
    assert two.peak_activation_bytes == 2 * one.peak_activation_bytes


@pytest.mark.parametrize(
    ("shape", "groups", "kind"),
    [((64, 32, 1, 1), 1, "pointwise"), ((64, 8, 1, 1), 4, "pointwise"), ((32, 1, 3, 3), 32, "depthwise"),
     ((64, 4, 3, 3), 8, "grouped"), ((64, 32, 3, 3), 1, "dense"), ((64, 3, 7, 7), 1, "dense")],
)  # fmt: skip
def test_conv_kind(shape, groups, kind):
    assert conv_kind(shape, groups) == kind


def test_counts_scale_with_batch_and_restore_training_mode():
    model = hsnet.create_model("hsnet").train()
    one, two = profile_model(model, 32), profile_model(model, 32, batch=2)
    assert two.macs == 2 * one.macs and two.flops == 2 * one.flops and two.params == one.params
    assert model.training


def test_ghostnet_calibration_and_hsnet_targets():
    """The full convention reproduces Table 4's GhostNet (149.23 M) and so HSNet's 3.00 M / 231.87 M."""
    ghost = profile_model(hsnet.create_model("ghostnet_100", num_classes=100), 224)
    assert ghost.macs == pytest.approx(140.0e6, rel=1e-3)
    assert ghost.flops == pytest.approx(149.23e6, rel=0.015)
    net = profile_model(hsnet.create_model("hsnet", num_classes=100), 224)
    assert net.params == pytest.approx(3.00e6, rel=0.03)
    assert net.flops == pytest.approx(231.87e6, rel=0.03)
    # the paper's thesis: HSNet moves work out of 1x1 convolutions
    assert net.macs_by_kind["pointwise"] / net.macs < 0.5 < ghost.macs_by_kind["pointwise"] / ghost.macs
