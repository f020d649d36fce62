"""Every registered model, parametrized over list_models(): a model is tested the moment it is registered."""

import pytest
import torch
from torch import nn

import hsnet
from hsnet.models.base import Classifier
from hsnet.profiling import profile_model
from tests.conftest import randomize_bn

MODELS = hsnet.list_models()
CASES = [(n, s) for n in MODELS for s in hsnet.model_info(n).test_sizes]
REFERENCES = [(n, i, r) for n in MODELS for i, r in enumerate(hsnet.model_info(n).references)]


def _smallest(name: str) -> int:
    return min(hsnet.model_info(name).test_sizes)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_forward_shape_and_finite(name, size):
    model = hsnet.create_model(name, num_classes=7).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, size, size))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    model = hsnet.create_model(name).train()
    size = _smallest(name)
    model(torch.randn(2, 3, size, size)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_fused_model_matches_and_has_no_batchnorm(name):
    model = hsnet.create_model(name)
    randomize_bn(model)
    model.eval()
    fused = hsnet.reparameterize_model(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    size = _smallest(name)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    scale = ref.abs().max().clamp(min=1.0)
    torch.testing.assert_close(out / scale, ref / scale, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in fused.parameters()) <= sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_declared_metadata_equals_measured(name):
    info = hsnet.model_info(name)
    model = hsnet.create_model(name)
    prof = profile_model(model, info.input_size)
    assert (prof.params, prof.macs) == (info.params, info.macs)
    assert model.num_classes == info.num_classes == prof.output_shape[1]
    assert len(info.mean) == len(info.std) == 3 and all(s > 0 for s in info.std)
    assert info.input_size in info.test_sizes and info.paper and info.description


@pytest.mark.parametrize(("name", "index", "ref"), REFERENCES, ids=[f"{n}-{i}" for n, i, _ in REFERENCES])
def test_published_figures_are_reproduced(name, index, ref):
    prof = profile_model(hsnet.create_model(name, num_classes=ref.num_classes), ref.input_size)
    for measured, published, rtol in (
        (prof.params, ref.params, ref.params_rtol),
        (prof.macs, ref.macs, ref.macs_rtol),
        (prof.flops, ref.flops, ref.flops_rtol),
    ):
        if published is not None:
            assert abs(measured / published - 1) <= rtol, f"{measured:,} vs {published:,.0f} ({ref.source})"


@pytest.mark.parametrize("name", MODELS)
def test_classifier_interface(name):
    model = hsnet.create_model(name).eval()
    assert isinstance(model, Classifier)
    size = _smallest(name)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.dim() == 4
        torch.testing.assert_close(model.forward_head(feats), model(x))
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.dim() == 2
        model.reset_classifier(5)
        assert model(x).shape == (1, 5) and model.num_classes == 5
