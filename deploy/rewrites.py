"""Export-friendly module swaps, applied after re-parameterisation. Each computes exactly what it replaces.

* **Channel shuffle as a channel gather.** :class:`hsnet.layers.ChannelShuffle` reshapes to a 5-D tensor
  ``(N, g, C/g, H, W)`` and transposes two of its axes. TFLite converters that move NCHW graphs to NHWC
  (onnx2tf) must guess the layout of such a tensor, and XNNPACK/GPU delegates handle rank 5 poorly. The shuffle
  is only a fixed permutation of channels, so it becomes one ``Gather`` on axis 1 with a constant index:
  rank 4 throughout, no reshape across the channel axis for a layout converter to get wrong (in NHWC it is a
  gather on the last axis), no arithmetic (a permutation 1x1 convolution would cost ``C^2`` MACs per pixel and
  add parameters), and the same quantization scale in and out for int8. CoreML has a native ``gather``.
* **ECA's Conv1d as a Conv2d.** ECA flattens the pooled ``(N, C, 1, 1)`` map to ``(N, 1, C)``, runs a 1-D
  convolution across channels and unsqueezes back. 1-D convolutions are not native in TFLite (converters emit
  reshapes around a 2-D one, and onnx2tf has put it on the wrong axis). Here the pooled map is transposed to
  ``(N, 1, C, 1)`` and convolved with a ``(k, 1)`` Conv2d holding the same ``k`` weights, then transposed back:
  only 4-D tensors, no reshape, identical parameters and multiply-adds.
* **Adaptive average pooling to a size that does not divide the input** (VGG's 7x7 pool on the 1x1 map of a
  32x32 input) has no ONNX operator; the TorchScript exporter refuses it. Each output cell is the mean of a
  fixed window, i.e. a linear map per spatial axis, so it becomes ``A_h @ x @ A_w^T`` with constant averaging
  matrices (two MatMuls, exact up to float rounding). Pools whose output divides the input export as
  ``AveragePool``/``GlobalAveragePool`` and are left alone.
* **A GhostModule whose channel trim keeps every channel** (``ceil(out / ratio) * ratio == out``, every GhostModule
  of HSNet and GhostNet) ends in a ``Slice`` that copies the whole tensor, which onnxsim leaves in place. It is
  dropped: one copy less per module on every target (about 4 % of HSNet's onnxruntime latency at 224x224).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hsnet.layers.eca import ECA
from hsnet.layers.ghost import GhostModule
from hsnet.layers.shuffle import ChannelShuffle

__all__ = [
    "REWRITES",
    "AdaptiveAvgPoolMatMul",
    "AppliedRewrite",
    "ECAConv2d",
    "GatherChannelShuffle",
    "GhostConcat",
    "Rewrite",
    "apply_export_rewrites",
]


class GatherChannelShuffle(nn.Module):
    """Channel shuffle as a gather of channels with a fixed permutation (same result as ``ChannelShuffle``).

    Args:
        channels: number of input channels (the permutation depends on it).
        groups: shuffle groups.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channel shuffle: {channels} channels are not divisible by {groups} groups")
        self.channels, self.groups = channels, groups
        per_group = channels // groups
        # Output channel o = n * groups + i takes input channel i * per_group + n (the (g, C/g) -> (C/g, g) swap).
        out = torch.arange(channels)
        perm = (out % groups) * per_group + out // groups
        self.register_buffer("perm", perm, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.perm)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}"


class ECAConv2d(nn.Module):
    """ECA with its 1-D channel convolution written as a ``(k, 1)`` Conv2d over ``(N, 1, C, 1)``.

    Keeps the submodule names of :class:`hsnet.layers.eca.ECA` (``pool``, ``conv``, ``gate``) so that layer
    names stay the same in the exported graph.
    """

    def __init__(self, eca: ECA) -> None:
        super().__init__()
        k = eca.conv.kernel_size[0]
        self.pool = eca.pool
        self.conv = nn.Conv2d(1, 1, (k, 1), padding=(k // 2, 0), bias=eca.conv.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(eca.conv.weight.unsqueeze(-1))
            if eca.conv.bias is not None:
                self.conv.bias.copy_(eca.conv.bias)
        self.conv.to(eca.conv.weight.device, eca.conv.weight.dtype)
        self.gate = eca.gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).transpose(1, 2)  # (N, C, 1, 1) -> (N, 1, C, 1): channels on the height axis
        y = self.gate(self.conv(y)).transpose(1, 2)  # back to (N, C, 1, 1)
        return x * y


class GhostConcat(nn.Module):
    """A GhostModule without its channel trim, for modules whose two halves make exactly ``out_chs`` channels.

    Keeps the submodule names of :class:`hsnet.layers.ghost.GhostModule`.
    """

    def __init__(self, ghost: GhostModule) -> None:
        super().__init__()
        self.primary_conv = ghost.primary_conv
        self.cheap_operation = ghost.cheap_operation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        return torch.cat([x1, self.cheap_operation(x1)], dim=1)


def _ghost_trim_is_identity(m: nn.Module, shape: tuple[int, ...]) -> bool:
    convs = [c for c in (*m.primary_conv.modules(), *m.cheap_operation.modules()) if isinstance(c, nn.Conv2d)]
    return len(convs) == 2 and convs[0].out_channels + convs[1].out_channels == m.out_chs


def _averaging_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) matrix of PyTorch's adaptive pooling windows: [floor(i*in/out), ceil((i+1)*in/out))."""
    a = torch.zeros(size_out, size_in)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


class AdaptiveAvgPoolMatMul(nn.Module):
    """``AdaptiveAvgPool2d`` for one fixed input size, as ``A_h @ x @ A_w^T``.

    Args:
        input_hw: the spatial size the pool sees (the rewrite is only valid for it).
        output_hw: the pool's output size.
    """

    def __init__(self, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> None:
        super().__init__()
        self.input_hw, self.output_hw = input_hw, output_hw
        self.register_buffer("rows", _averaging_matrix(input_hw[0], output_hw[0]), persistent=False)
        self.register_buffer("cols", _averaging_matrix(input_hw[1], output_hw[1]).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)

    def extra_repr(self) -> str:
        return f"input_hw={self.input_hw}, output_hw={self.output_hw}"


def _pool_sizes(m: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    hw = (shape[-2], shape[-1])
    return hw, tuple(o if o is not None else i for o, i in zip(out, hw, strict=True))  # None keeps that axis


def _pool_not_exportable(m: nn.Module, shape: tuple[int, ...]) -> bool:
    hw, out = _pool_sizes(m, shape)
    return any(i % o for i, o in zip(hw, out, strict=True))


@dataclass(frozen=True)
class Rewrite:
    """One kind of module swap.

    Attributes:
        name: short name recorded in manifests and pre-flight findings.
        matches: which modules it may replace.
        build: ``build(module, input_shape)`` returns the replacement (``input_shape`` from a traced pass).
        reason: one line: what trouble the original form causes.
        applies: ``applies(module, input_shape)``: whether a matched module really needs the swap.
    """

    name: str
    matches: Callable[[nn.Module], bool]
    build: Callable[[nn.Module, tuple[int, ...]], nn.Module]
    reason: str
    applies: Callable[[nn.Module, tuple[int, ...]], bool] = lambda m, shape: True


REWRITES: tuple[Rewrite, ...] = (
    Rewrite(
        "channel_shuffle_gather",
        lambda m: isinstance(m, ChannelShuffle),
        lambda m, shape: GatherChannelShuffle(shape[1], m.groups),
        "channel shuffle reshapes to a 5-D tensor; replaced by a rank-4 channel Gather",
    ),
    Rewrite(
        "eca_conv1d_as_conv2d",
        lambda m: isinstance(m, ECA),
        lambda m, shape: ECAConv2d(m),
        "ECA's Conv1d runs on a 3-D tensor; replaced by a (k, 1) Conv2d between two 4-D transposes",
    ),
    Rewrite(
        "adaptive_avg_pool_matmul",
        lambda m: isinstance(m, nn.AdaptiveAvgPool2d),
        lambda m, shape: AdaptiveAvgPoolMatMul(*_pool_sizes(m, shape)),
        "adaptive average pooling to a size that does not divide its input has no ONNX operator; "
        "replaced by two MatMuls with constant averaging matrices",
        applies=_pool_not_exportable,
    ),
    Rewrite(
        "ghost_drop_identity_slice",
        lambda m: isinstance(m, GhostModule),
        lambda m, shape: GhostConcat(m),
        "the GhostModule's trim keeps every channel; its whole-tensor Slice is dropped",
        applies=_ghost_trim_is_identity,
    ),
)


@dataclass(frozen=True)
class AppliedRewrite:
    """A module that was swapped: where, by which rewrite."""

    rewrite: str
    module: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rewrite": self.rewrite, "module": self.module, "reason": self.reason}


@torch.no_grad()
def apply_export_rewrites(
    model: nn.Module, input_shape: tuple[int, ...], rewrites: tuple[Rewrite, ...] = REWRITES
) -> list[AppliedRewrite]:
    """Swap, in place, every module that a rewrite matches; return what was swapped, in module order.

    One forward pass on zeros of ``input_shape`` records each matched module's input shape (a rewrite may need
    the channel count). The model must be in eval mode; its function is unchanged.
    """
    targets = {name: (m, rw) for name, m in model.named_modules() for rw in rewrites if name and rw.matches(m)}
    if not targets:
        return []
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:  # returns None: input unchanged
            shapes.setdefault(name, tuple(inputs[0].shape))

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, (m, _) in targets.items()]
    try:
        model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    applied = []
    for name, (module, rw) in targets.items():
        if name not in shapes or not rw.applies(module, shapes[name]):  # dead branch, or nothing to fix
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, rw.build(module, shapes[name]))
        applied.append(AppliedRewrite(rw.name, name, rw.reason))
    return applied
