"""SqueezeNet (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model
size", arXiv 2016).

Reconstructed:

* ``squeezenet1_0``: the network of the paper's Table 1 (7x7/2 stem with 96 filters, eight Fire modules,
  max-pools after conv1, fire4 and fire8, a 1x1 convolution classifier with ReLU, global average pooling),
  without BatchNorm and without bypass, as in the reference implementation (torchvision
  ``squeezenet1_0``: 1,248,424 parameters).
* ``squeezenet1_1``: the cheaper v1.1 definition of the official SqueezeNet repository (3x3/2 stem with 64
  filters, pools moved earlier; torchvision ``squeezenet1_1``: 1,235,496 parameters).
* ``cifar_squeezenet``: the CIFAR definition of weiaicunzai/pytorch-cifar100 ``models/squeezenet.py``:
  stride-1 3x3 stem, BatchNorm after every convolution, 2x2 max-pools after the stem, fire4 and fire8,
  identity shortcuts around fire3, fire5 and fire7 (the paper's "simple bypass" also wraps fire9; the
  reference does not), and a plain 1x1 convolution classifier (no ReLU, no dropout).

The classifier is a 1x1 convolution applied before global pooling, so :class:`SqueezeNet` overrides
:meth:`reset_classifier`.
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

__all__ = ["Fire", "SqueezeNet", "SqueezeNetConfig", "squeezenet1_0", "squeezenet1_1", "cifar_squeezenet"]

_PAPER = (
    "Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, arXiv 2016"
)

POOL = "M"


class Fire(nn.Module):
    """Fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands concatenated on channels.

    Args:
        in_chs: input channels.
        squeeze_chs: channels of the squeeze layer.
        expand_chs: channels of *each* expand branch (output has ``2 * expand_chs``).
        bn: BatchNorm after every convolution (CIFAR definition) or none (ImageNet definitions).
        bypass: add the input to the output (the paper's simple bypass; needs ``in_chs == 2 * expand_chs``).
    """

    def __init__(self, in_chs: int, squeeze_chs: int, expand_chs: int, *, bn: bool, bypass: bool) -> None:
        super().__init__()
        if bypass and in_chs != 2 * expand_chs:
            raise ValueError(f"bypass needs in_chs == 2 * expand_chs, got {in_chs} and {2 * expand_chs}")
        # The reference convolutions keep their bias even when BatchNorm follows.
        self.squeeze = ConvBNAct(in_chs, squeeze_chs, 1, bias=True, bn=bn)
        self.expand1x1 = ConvBNAct(squeeze_chs, expand_chs, 1, bias=True, bn=bn)
        self.expand3x3 = ConvBNAct(squeeze_chs, expand_chs, 3, bias=True, bn=bn)
        self.bypass = bypass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        out = torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)
        if self.bypass:
            out = out + x
        return out


class SqueezeNet(Classifier):
    """SqueezeNet: a stem convolution, Fire modules with max-pools, and a 1x1 convolution classifier.

    Args:
        cfg: architecture definition.
        num_classes: number of output classes.
    """

    def __init__(self, cfg: SqueezeNetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = [
            ConvBNAct(
                3,
                cfg.stem_chs,
                cfg.stem_kernel,
                cfg.stem_stride,
                bias=True,
                bn=cfg.bn,
                padding=cfg.stem_padding,
            )
        ]
        chs = cfg.stem_chs
        for index, layer in enumerate(cfg.layers):
            if layer == POOL:
                layers.append(nn.MaxPool2d(cfg.pool_kernel, 2, ceil_mode=cfg.pool_ceil_mode))
                continue
            squeeze_chs, expand_chs = layer
            layers.append(Fire(chs, squeeze_chs, expand_chs, bn=cfg.bn, bypass=index in cfg.bypass))
            chs = 2 * expand_chs
        self.features = nn.Sequential(*layers)
        self.num_features = chs
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.classifier: nn.Conv2d = nn.Conv2d(chs, num_classes, 1)
        self.head_act: nn.Module = nn.ReLU() if cfg.head_act else nn.Identity()
        self.global_pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify a feature map; with ``pre_logits`` return the globally pooled features instead."""
        if pre_logits:
            return self.global_pool(x).flatten(1)
        x = self.head_act(self.classifier(self.head_drop(x)))
        return self.global_pool(x).flatten(1)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the 1x1 classifier convolution by a fresh one with ``num_classes`` outputs."""
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)
        _init_classifier(self.classifier)
        self.num_classes = num_classes


@dataclass(frozen=True)
class SqueezeNetConfig:
    """One SqueezeNet definition.

    Attributes:
        stem_chs: output channels of the stem convolution.
        stem_kernel: stem kernel size.
        stem_stride: stem stride.
        stem_padding: stem padding (the ImageNet references use none).
        layers: ``(squeeze_chs, expand_chs)`` per Fire module, or ``"M"`` for a stride-2 max-pool; the stem
            is not in this list.
        bypass: indices into ``layers`` of the Fire modules with an identity shortcut.
        pool_kernel: max-pool window (3 with ceil mode on ImageNet, 2 on CIFAR).
        pool_ceil_mode: round pooled sizes up, as the Caffe reference does.
        bn: BatchNorm after every convolution.
        head_act: ReLU after the classifier convolution (ImageNet definitions).
        drop_rate: dropout before the classifier convolution (0.5 in the ImageNet definitions).
    """

    stem_chs: int
    stem_kernel: int
    stem_stride: int
    stem_padding: int
    layers: tuple[tuple[int, int] | str, ...]
    bypass: tuple[int, ...] = ()
    pool_kernel: int = 3
    pool_ceil_mode: bool = True
    bn: bool = False
    head_act: bool = True
    drop_rate: float = 0.5


_CFGS: dict[str, SqueezeNetConfig] = {
    "squeezenet1_0": SqueezeNetConfig(
        stem_chs=96,
        stem_kernel=7,
        stem_stride=2,
        stem_padding=0,
        layers=(
            POOL,
            (16, 64),
            (16, 64),
            (32, 128),
            POOL,
            (32, 128),
            (48, 192),
            (48, 192),
            (64, 256),
            POOL,
            (64, 256),
        ),
    ),
    "squeezenet1_1": SqueezeNetConfig(
        stem_chs=64,
        stem_kernel=3,
        stem_stride=2,
        stem_padding=0,
        layers=(
            POOL,
            (16, 64),
            (16, 64),
            POOL,
            (32, 128),
            (32, 128),
            POOL,
            (48, 192),
            (48, 192),
            (64, 256),
            (64, 256),
        ),
    ),
    "cifar_squeezenet": SqueezeNetConfig(
        stem_chs=96,
        stem_kernel=3,
        stem_stride=1,
        stem_padding=1,
        layers=(
            POOL,
            (16, 64),
            (16, 64),
            (32, 128),
            POOL,
            (32, 128),
            (48, 192),
            (48, 192),
            (64, 256),
            POOL,
            (64, 256),
        ),
        bypass=(2, 5, 7),  # fire3, fire5, fire7
        pool_kernel=2,
        pool_ceil_mode=False,
        bn=True,
        head_act=False,
        drop_rate=0.0,
    ),
}


def _init_classifier(conv: nn.Conv2d) -> None:
    # The reference initialises the final convolution with a small normal, unlike the fan-out Kaiming rest.
    nn.init.normal_(conv.weight, 0.0, 0.01)
    nn.init.zeros_(conv.bias)


def _create(cfg: SqueezeNetConfig, num_classes: int, **overrides: Any) -> SqueezeNet:
    model = SqueezeNet(apply_overrides(cfg, overrides), num_classes=num_classes)
    init_weights(model)
    _init_classifier(model.classifier)
    return model


@register_model(
    family="squeezenet",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=1_248_424,
    macs=818_924_576,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=1_248_424,
            macs=0.82e9,
            num_classes=1000,
            input_size=224,
            source="torchvision squeezenet1_0 (SqueezeNet1_0_Weights.IMAGENET1K_V1: num_params 1248424, "
            "GFLOPS 0.82, counted as multiply-adds); the paper gives no MACs",
        ),
    ),
    description="SqueezeNet 1.0: Fire modules, 7x7 stem, no BatchNorm",
)
def squeezenet1_0(*, num_classes: int = 1000, **overrides: Any) -> SqueezeNet:
    """SqueezeNet 1.0 (paper Table 1) for 224x224 ImageNet."""
    return _create(_CFGS["squeezenet1_0"], num_classes, **overrides)


@register_model(
    family="squeezenet",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=1_235_496,
    macs=349_151_936,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=1_235_496,
            macs=0.35e9,
            num_classes=1000,
            input_size=224,
            source="torchvision squeezenet1_1 (SqueezeNet1_1_Weights.IMAGENET1K_V1: num_params 1235496, "
            "GFLOPS 0.35, counted as multiply-adds); v1.1 is from the official SqueezeNet repository",
        ),
    ),
    description="SqueezeNet 1.1: 3x3 stem and earlier pooling, 2.4x cheaper than 1.0",
)
def squeezenet1_1(*, num_classes: int = 1000, **overrides: Any) -> SqueezeNet:
    """SqueezeNet 1.1 (official SqueezeNet repository) for 224x224 ImageNet."""
    return _create(_CFGS["squeezenet1_1"], num_classes, **overrides)


@register_model(
    family="squeezenet",
    paper=_PAPER,
    num_classes=100,
    input_size=32,
    params=781_156,
    macs=53_280_768,
    input_sizes=(32, 224),
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    references=(
        table4_reference("cifar_squeezenet", params_rtol=0.01),
        cifar100_repo_reference("models/squeezenet.py", 0.781e6, 53.3e6),
    ),
    description="SqueezeNet with BatchNorm and simple bypass, CIFAR stem (pytorch-cifar100)",
)
def cifar_squeezenet(*, num_classes: int = 100, **overrides: Any) -> SqueezeNet:
    """SqueezeNet with simple bypass for 32x32 CIFAR (pytorch-cifar100 definition)."""
    return _create(_CFGS["cifar_squeezenet"], num_classes, **overrides)
