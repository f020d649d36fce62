"""MobileNetV3: Howard et al., "Searching for MobileNetV3", ICCV 2019.

Reconstructed from the paper's Tables 1 (Large) and 2 (Small): a stride-2 3x3 stem with 16 channels and
hard-swish, inverted-residual blocks (optional 1x1 expansion, k x k depthwise, optional squeeze-and-excite,
1x1 linear projection) with ReLU in the early and hard-swish in the late layers, a 1x1 convolution to 6x the
last bottleneck width (960 / 576), global average pooling, then a non-BN 1x1 "conv" (a linear layer on the
pooled vector) to 1280 (Large) or 1024 (Small) channels with hard-swish, dropout and the classifier.

Definition choices follow the torchvision reference implementation, whose parameter counts (Large
5,483,032, Small 2,542,856) this file reproduces exactly:
- The squeeze-and-excite bottleneck is ``make_divisible(expanded // 4, 8)`` channels, with biased 1x1
  convolutions, ReLU and hard-sigmoid gating, placed after the depthwise activation (paper Sec. 5.3).
- A block whose expansion equals its input width (the first block of both models) has no expansion conv.
- The classifier hidden width is 1280 (Large) / 1024 (Small), as in the paper's Tables 1-2.
- The last 1x1 convolution of Small (576 channels) has no squeeze-and-excite, although Table 2 marks one;
  with it the count would be 2,709,464 (torchvision and timm both omit it).
- BatchNorm uses eps 1e-3 and momentum 0.01 (TF defaults kept by torchvision); it changes no count.

Table 3 of the paper gives Large 1.0 as 5.4 M params / 219 M MAdds and Small 1.0 as 2.5 M / 56 M; the
TF-slim README lists 5.4 M / 217 M and 2.9 M / 66 M for its checkpoints. The reference parameter counts
used here are torchvision's; 5,483,032 does not round to the paper's 5.4 M, so only the paper's MAdds are
checked for Large.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsnet.layers import ConvBNAct, make_divisible
from hsnet.layers.se import SqueezeExcite
from hsnet.models.base import Classifier, apply_overrides, init_weights
from hsnet.models.registry import IMAGENET_MEAN, IMAGENET_STD, Reference, register_model

__all__ = [
    "BlockSpec",
    "InvertedResidualSE",
    "MobileNetV3",
    "MobileNetV3Config",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
]

_PAPER = "Howard et al., Searching for MobileNetV3, ICCV 2019"


class InvertedResidualSE(nn.Module):
    """MobileNetV3 bottleneck: expansion, depthwise, optional SE, linear projection (paper Fig. 4).

    Args:
        in_chs: input channels.
        mid_chs: expanded channels; no expansion convolution when equal to ``in_chs``.
        out_chs: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride.
        use_se: insert squeeze-and-excite after the depthwise activation.
        act_layer: activation of the expansion and depthwise layers.
    """

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        use_se: bool,
        act_layer: type[nn.Module],
    ) -> None:
        super().__init__()
        self.use_res = stride == 1 and in_chs == out_chs
        self.expand: nn.Module = (
            ConvBNAct(in_chs, mid_chs, 1, act_layer=act_layer) if mid_chs != in_chs else nn.Identity()
        )
        self.dw = ConvBNAct(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, act_layer=act_layer)
        # torchvision rounds the SE bottleneck as make_divisible(expanded // 4, 8); its counts depend on it.
        rd_chs = make_divisible(mid_chs // 4, 8)
        self.se: nn.Module = SqueezeExcite(mid_chs, rd_chs) if use_se else nn.Identity()
        self.project = ConvBNAct(mid_chs, out_chs, 1, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return x + out if self.use_res else out


class MobileNetV3(Classifier):
    """MobileNetV3 classifier.

    Args:
        cfg: architecture definition (see :class:`MobileNetV3Config`).
        num_classes: classifier width.
    """

    def __init__(self, cfg: MobileNetV3Config, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        stem_chs = make_divisible(cfg.stem_chs * cfg.width)
        self.stem = ConvBNAct(3, stem_chs, 3, 2, act_layer=nn.Hardswish)
        blocks: list[nn.Module] = []
        in_chs = stem_chs
        for spec in cfg.blocks:
            mid_chs = make_divisible(spec.exp_chs * cfg.width)
            out_chs = make_divisible(spec.out_chs * cfg.width)
            act = nn.Hardswish if spec.hard_swish else nn.ReLU
            blocks.append(InvertedResidualSE(in_chs, mid_chs, out_chs, spec.kernel_size, spec.stride, spec.use_se, act))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        head_in = 6 * in_chs
        self.conv_head = ConvBNAct(in_chs, head_in, 1, act_layer=nn.Hardswish)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = make_divisible(cfg.hidden_chs * cfg.width)
        # The paper draws this as a 1x1 conv without BN on the pooled map; on a 1x1 map it is a linear layer.
        self.pre_logits = nn.Linear(head_in, self.num_features)
        self.pre_logits_act = nn.Hardswish()
        self.drop = nn.Dropout(cfg.drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.01

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits_act(self.pre_logits(self.global_pool(x).flatten(1)))
        if pre_logits:
            return x
        return self.classifier(self.drop(x))


@dataclass(frozen=True)
class BlockSpec:
    """One row of the paper's Table 1/2.

    Attributes:
        kernel_size: depthwise kernel size.
        exp_chs: expanded ("exp size") channels.
        out_chs: output channels.
        use_se: squeeze-and-excite in the block.
        hard_swish: hard-swish (True) or ReLU (False) nonlinearity.
        stride: depthwise stride.
    """

    kernel_size: int
    exp_chs: int
    out_chs: int
    use_se: bool
    hard_swish: bool
    stride: int


def _rows(*rows: tuple[int, int, int, bool, bool, int]) -> tuple[BlockSpec, ...]:
    return tuple(BlockSpec(*r) for r in rows)


@dataclass(frozen=True)
class MobileNetV3Config:
    """One MobileNetV3 variant.

    Attributes:
        blocks: bottleneck rows (paper Table 1 or 2).
        hidden_chs: width of the non-BN layer after pooling (1280 Large, 1024 Small).
        stem_chs: stem output channels.
        width: width multiplier (channels rounded to multiples of 8).
        drop_rate: dropout before the classifier.
    """

    blocks: tuple[BlockSpec, ...]
    hidden_chs: int
    stem_chs: int = 16
    width: float = 1.0
    drop_rate: float = 0.2


_CFGS: dict[str, MobileNetV3Config] = {
    "mobilenetv3_large_100": MobileNetV3Config(
        blocks=_rows(
            (3, 16, 16, False, False, 1),
            (3, 64, 24, False, False, 2),
            (3, 72, 24, False, False, 1),
            (5, 72, 40, True, False, 2),
            (5, 120, 40, True, False, 1),
            (5, 120, 40, True, False, 1),
            (3, 240, 80, False, True, 2),
            (3, 200, 80, False, True, 1),
            (3, 184, 80, False, True, 1),
            (3, 184, 80, False, True, 1),
            (3, 480, 112, True, True, 1),
            (3, 672, 112, True, True, 1),
            (5, 672, 160, True, True, 2),
            (5, 960, 160, True, True, 1),
            (5, 960, 160, True, True, 1),
        ),
        hidden_chs=1280,
    ),
    "mobilenetv3_small_100": MobileNetV3Config(
        blocks=_rows(
            (3, 16, 16, True, False, 2),
            (3, 72, 24, False, False, 2),
            (3, 88, 24, False, False, 1),
            (5, 96, 40, True, True, 2),
            (5, 240, 40, True, True, 1),
            (5, 240, 40, True, True, 1),
            (5, 120, 48, True, True, 1),
            (5, 144, 48, True, True, 1),
            (5, 288, 96, True, True, 2),
            (5, 576, 96, True, True, 1),
            (5, 576, 96, True, True, 1),
        ),
        hidden_chs=1024,
    ),
}


def _create(cfg: MobileNetV3Config, num_classes: int, **overrides: Any) -> MobileNetV3:
    model = MobileNetV3(apply_overrides(cfg, overrides), num_classes)
    init_weights(model)
    return model


@register_model(
    family="mobilenetv3",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=5_483_032,
    macs=216_589_760,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=5_483_032,
            macs=219e6,
            num_classes=1000,
            input_size=224,
            source="params: torchvision mobilenet_v3_large (documented num_params 5,483,032); "
            "MACs: Howard et al. 2019, Table 3 (V3-Large 1.0, 219 M MAdds)",
        ),
    ),
    description="MobileNetV3-Large 1.0x, 224x224 ImageNet definition (torchvision-compatible)",
)
def mobilenetv3_large_100(*, num_classes: int = 1000, **overrides: Any) -> MobileNetV3:
    """MobileNetV3-Large, width 1.0 (paper Table 1)."""
    return _create(_CFGS["mobilenetv3_large_100"], num_classes, **overrides)


@register_model(
    family="mobilenetv3",
    paper=_PAPER,
    num_classes=1000,
    input_size=224,
    params=2_542_856,
    macs=56_510_400,
    input_sizes=(224, 32),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    references=(
        Reference(
            params=2_542_856,
            macs=56e6,
            num_classes=1000,
            input_size=224,
            source="params: torchvision mobilenet_v3_small (documented num_params 2,542,856); "
            "MACs: Howard et al. 2019, Table 3 (V3-Small 1.0, 56 M MAdds)",
        ),
        Reference(
            params=2.5e6,
            macs=56e6,
            num_classes=1000,
            input_size=224,
            source="Howard et al. 2019 (ICCV), Table 3 (V3-Small 1.0, 2.5 M params, 56 M MAdds)",
            params_rtol=0.02,
        ),
    ),
    description="MobileNetV3-Small 1.0x, 224x224 ImageNet definition (torchvision-compatible)",
)
def mobilenetv3_small_100(*, num_classes: int = 1000, **overrides: Any) -> MobileNetV3:
    """MobileNetV3-Small, width 1.0 (paper Table 2)."""
    return _create(_CFGS["mobilenetv3_small_100"], num_classes, **overrides)
