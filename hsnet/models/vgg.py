"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015).

Reconstructed:

* ``vgg16_bn``: configuration D of the paper's Table 1 (thirteen 3x3 convolutions in five stages, each stage
  closed by a 2x2 max-pool) with BatchNorm after every convolution, followed by the paper's three fully
  connected layers (4096, 4096, classes) with dropout 0.5 after the first two. As in the reference
  implementation (torchvision ``vgg16_bn``: 138,365,992 parameters, 15.47 GFLOPS counted as multiply-adds),
  the convolutions keep their bias before BatchNorm and an adaptive 7x7 average pool sits in front of the
  first fully connected layer, so inputs other than 224x224 (e.g. 32x32) still fit it.
* ``cifar_vgg16_bn``: ``vgg16_bn`` of weiaicunzai/pytorch-cifar100 ``models/vgg.py``: the same thirteen
  convolutions (their 32x32 input leaves a 1x1x512 map), then Linear(512, 4096), ReLU, Dropout,
  Linear(4096, 4096), ReLU, Linear(4096, classes) -- dropout only after the first hidden layer. The reference
  flattens the 1x1 map; here a global average pool does so, which is the identity at 32x32 and lets the
  224x224 inputs the HSNet paper also used reach the 512-wide classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.paper import cifar100_repo_reference, table4_reference
from hsnet.models.registry import CIFAR100_MEAN, CIFAR100_STD, IMAGENET_MEAN, IMAGENET_STD, Reference, register_model

__all__ = ["VGG", "VGGConfig", "vgg16_bn", "cifar_vgg16_bn"]

_PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"

POOL = "M"
# Configuration D of the paper's Table 1: output channels of each 3x3 convolution, "M" for a 2x2 max-pool.
_CFG_D: tuple[int | str, ...] = (
    64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL,
)  # fmt: skip


class VGG(Classifier):
    """VGG: stacked 3x3 convolutions with max-pools, then two hidden fully connected layers and a classifier.

    Args:
        cfg: architecture definition.
        num_classes: number of output classes.
    """

    def __init__(self, cfg: VGGConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        chs = 3
        for layer in cfg.layers:
            if layer == POOL:
                layers.append(nn.MaxPool2d(2, 2))
                continue
            assert isinstance(layer, int)
            # The reference convolutions keep their bias in front of BatchNorm.
            layers.append(ConvBNAct(chs, layer, 3, bias=True, bn=cfg.bn))
            chs = layer
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(cfg.pool_size)
        self.num_features = cfg.hidden
        self.pre_logits = nn.Sequential(
            nn.Linear(chs * cfg.pool_size * cfg.pool_size, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.drop_rate),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.drop_rate) if cfg.second_dropout else nn.Identity(),
        )
        self.classifier = nn.Linear(cfg.hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify a feature map; with ``pre_logits`` return the second hidden layer's activations."""
        x = self.pre_logits(self.pool(x).flatten(1))
        return x if pre_logits else self.classifier(x)


@dataclass(frozen=True)
class VGGConfig:
    """One VGG definition.

    Attributes:
        layers: output channels per 3x3 convolution, ``"M"`` for a 2x2 max-pool.
        bn: BatchNorm after every convolution.
        pool_size: side of the adaptive average pool in front of the first fully connected layer (7 for the
            ImageNet head, 1 for the CIFAR head).
        hidden: width of the two hidden fully connected layers.
        second_dropout: dropout after the second hidden layer too (ImageNet; the CIFAR reference has none).
        drop_rate: dropout probability after the hidden fully connected layers.
    """

    layers: tuple[int | str, ...] = _CFG_D
    bn: bool = True
    pool_size: int = 7
    hidden: int = 4096
    second_dropout: bool = True
    drop_rate: float = 0.5


_CFGS: dict[str, VGGConfig] = {
    "vgg16_bn": VGGConfig(),
    "cifar_vgg16_bn": VGGConfig(pool_size=1, second_dropout=False),
}


def _create(cfg: VGGConfig, num_classes: int, **overrides: Any) -> VGG:
    model = VGG(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    return model


@register_model(
    family="vgg",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=138_365_992,
    macs=15_470_264_320,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=138_365_992,
            macs=15.47e9,
            num_classes=1000,
            input_size=224,
            source="torchvision vgg16_bn (VGG16_BN_Weights.IMAGENET1K_V1: num_params 138365992, "
            "GFLOPS 15.47, counted as multiply-adds)",
        ),
    ),
    description="VGG-16 (configuration D) with BatchNorm",
)
def vgg16_bn(*, num_classes: int = 1000, **overrides: Any) -> VGG:
    """VGG-16 with BatchNorm for 224x224 ImageNet (torchvision definition)."""
    return _create(_CFGS["vgg16_bn"], num_classes, **overrides)


@register_model(
    family="vgg",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=34_015_396,
    macs=332_480_512,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference("cifar_vgg16_bn", params_rtol=0.01),
        cifar100_repo_reference("models/vgg.py", 34.015e6, 332.5e6),
    ),
    description="VGG-16 with BatchNorm and a 512-wide head for 32x32 CIFAR (pytorch-cifar100)",
)
def cifar_vgg16_bn(*, num_classes: int = 100, **overrides: Any) -> VGG:
    """VGG-16 with BatchNorm for 32x32 CIFAR (pytorch-cifar100 definition)."""
    return _create(_CFGS["cifar_vgg16_bn"], num_classes, **overrides)
