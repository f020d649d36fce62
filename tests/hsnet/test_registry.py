from pathlib import Path

import pytest
from torch import nn

import hsnet
from hsnet.errors import HSNetError
from hsnet.registry import DuplicateModelError, UnknownModelError, register_model

BASELINES = [
    "ghostnet_100", "mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100",
    "squeezenet1_0", "squeezenet1_1", "shufflenetv1_g3_100", "shufflenetv2_100", "vgg16_bn", "resnet50",
    "cifar_mobilenetv1", "cifar_mobilenetv2", "cifar_squeezenet", "cifar_shufflenetv1", "cifar_shufflenetv2",
    "cifar_vgg16_bn",
]  # fmt: skip


def test_every_documented_name_is_registered():
    assert set(BASELINES + ["hsnet"]) <= set(hsnet.list_models())


def test_list_models_pattern():
    cifar = hsnet.list_models("cifar_*")
    assert cifar == sorted(cifar) and len(cifar) == 6 and all(n.startswith("cifar_") for n in cifar)
    assert hsnet.list_models("no_such_*") == []


def test_unknown_name_suggests_close_matches_and_never_substitutes():
    with pytest.raises(UnknownModelError) as e:
        hsnet.create_model("mobilenet_v2")
    msg = str(e.value)
    assert "unknown model 'mobilenet_v2'" in msg and "did you mean" in msg and "mobilenetv2_100" in msg
    assert isinstance(e.value, HSNetError)


def test_duplicate_registration_is_an_error():
    with pytest.raises(DuplicateModelError, match="already registered"):

        @register_model(family="x", paper="x", num_classes=1, input_size=8, params=0, macs=0)
        def hsnet(*, num_classes: int = 1) -> nn.Module:  # same name as the real HSNet
            return nn.Identity()


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_num_classes_is_validated(bad):
    with pytest.raises(HSNetError, match="num_classes must be a positive integer"):
        hsnet.create_model("hsnet", num_classes=bad)


def test_create_model_default_and_override_classes():
    assert hsnet.create_model("hsnet").classifier.out_features == 100
    assert hsnet.create_model("hsnet", num_classes=10).classifier.out_features == 10


def test_unknown_override_is_a_clear_error():
    with pytest.raises(HSNetError, match="valid"):
        hsnet.create_model("hsnet", widht=2)


def test_every_model_is_documented():
    docs = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    missing = [n for n in hsnet.list_models() if f"`{n}`" not in docs]
    assert not missing, f"add {missing} to docs/models.md"
