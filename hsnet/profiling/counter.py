"""Exact parameter, multiply-add and FLOP counting by tracing the operators one forward pass runs.

Every ATen operator is intercepted (``TorchDispatchMode``) and attributed to the innermost module running it,
so residual additions and attention multiplies written in a block's ``forward`` are counted too. Two
conventions are kept side by side (docs/profiling.md):

* **MACs**: multiply-accumulates of convolutions and matrix products only (the convention of the MobileNet,
  ShuffleNet and GhostNet papers, which call them "FLOPs" or "MAdds").
* **FLOPs (full)**: MACs plus every other arithmetic operation, one per output element unless stated:
  convolution / linear bias additions, BatchNorm (2: scale and shift), activations, pooling (one per input
  element), element-wise additions and multiplications. This is the convention in which GhostNet 1.0x with
  100 classes at 224x224 comes closest to the 149.23 M of HSNet's Table 4.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "KINDS",
    "FLOP_CATEGORIES",
    "LayerStats",
    "Profile",
    "conv_kind",
    "profile_model",
]

#: Operator kinds of the breakdown table, in display order.
KINDS = ("pointwise", "depthwise", "grouped", "dense", "linear", "other")
#: Categories of the full FLOP count, in display order.
FLOP_CATEGORIES = ("macs", "bias", "batchnorm", "activation", "pooling", "elementwise")

_ACTIVATIONS = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid",
    "hardsigmoid_", "sigmoid", "sigmoid_", "silu", "silu_", "gelu", "tanh", "leaky_relu", "leaky_relu_",
    "elu", "clamp", "clamp_min", "clamp_max", "_softmax", "_log_softmax",
}  # fmt: skip
_POOLING = {
    "mean", "avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "_adaptive_avg_pool2d",
    "adaptive_max_pool2d", "avg_pool1d", "sum",
}  # fmt: skip
_ELEMENTWISE = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_BATCHNORM = {
    "_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
    "_native_batch_norm_legit_functional", "batch_norm",
}  # fmt: skip


def conv_kind(weight_shape: torch.Size | tuple[int, ...], groups: int) -> str:
    """Classify a convolution by its weight shape ``(out, in/groups, *kernel)`` and ``groups``.

    ``pointwise``: 1x1 kernels (grouped 1x1, as in ShuffleNet, included); ``depthwise``: one input channel
    per group; ``grouped``: k x k kernels with several channels per group (HetConv's 3x3 branch);
    ``dense``: ordinary k x k convolution.
    """
    kernel = math.prod(weight_shape[2:])
    if groups > 1 and weight_shape[1] == 1:
        return "depthwise"
    if kernel == 1:
        return "pointwise"
    return "grouped" if groups > 1 else "dense"


@dataclass
class LayerStats:
    """What one module did in the traced forward pass (its own operators, not its children's)."""

    name: str
    type: str
    kind: str
    params: int = 0
    macs: int = 0
    flops: int = 0
    output_shape: tuple[int, ...] = ()


@dataclass
class Profile:
    """Result of :func:`profile_model`; all counts are for the whole batch (default batch 1).

    ``activations`` counts elements written by convolutions and matrix products; ``peak_activation_bytes`` is
    the most memory that operator outputs held at once during the pass (the input, parameters and buffers
    excluded): what an inference runtime without buffer reuse across live tensors must hold.
    """

    params: int
    trainable_params: int
    macs: int
    flops: int
    flops_by_category: dict[str, int]
    activations: int
    peak_activation_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs_by_kind: dict[str, int]
    params_by_kind: dict[str, int]
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def activation_bytes(self) -> int:
        """fp32 bytes written by convolutions and linear layers (see ``activations``)."""
        return 4 * self.activations

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["activation_bytes"] = self.activation_bytes
        return d


def _numel(t: Any) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None


class _OpCounter(TorchDispatchMode):
    """Counts every ATen operator and charges it to the module on top of ``stack``."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = [""]
        self.flops: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FLOP_CATEGORIES, 0))
        self.kind_macs: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        self.conv_kinds: dict[str, str] = {}
        self.activations = 0
        # Live activation memory: bytes of each storage an operator created, and how many tensors use it.
        self.external: set[int] = set()
        self.storage_bytes: dict[int, int] = {}
        self.storage_refs: dict[int, int] = defaultdict(int)
        self.live_bytes = 0
        self.peak_bytes = 0

    def ignore_storage_of(self, tensors: Any) -> None:
        """Never count these tensors' storages (the input, parameters, buffers) as activations."""
        for t in tensors:
            self.external.add(t.untyped_storage().data_ptr())

    def _track(self, out: Any) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.external or storage.nbytes() == 0:
                continue
            if key not in self.storage_bytes:
                self.storage_bytes[key] = storage.nbytes()
                self.live_bytes += storage.nbytes()
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self.storage_refs[key] += 1
            weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.storage_refs[key] -= 1
        if self.storage_refs[key] == 0:
            self.live_bytes -= self.storage_bytes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._track(out)
        name = func.overloadpacket.__name__
        owner = self.stack[-1]
        cat = self.flops[owner]
        result = _first_tensor(out)
        if name in ("convolution", "_convolution"):
            x, w, bias = args[0], args[1], args[2]
            groups = args[8]
            macs = result.numel() * math.prod(w.shape[1:])
            kind = conv_kind(w.shape, groups) if x.dim() == 4 else "other"
            self._add_macs(owner, kind, macs)
            self.conv_kinds[owner] = kind
            cat["bias"] += result.numel() if bias is not None else 0
            self.activations += result.numel()
        elif name in ("mm", "addmm", "bmm", "baddbmm"):
            a = args[1] if name in ("addmm", "baddbmm") else args[0]
            self._add_macs(owner, "linear", result.numel() * a.shape[-1])
            self.conv_kinds.setdefault(owner, "linear")
            if name in ("addmm", "baddbmm"):
                cat["bias"] += result.numel()
            self.activations += result.numel()
        elif name in _BATCHNORM:
            cat["batchnorm"] += 2 * result.numel()
        elif name in _ACTIVATIONS:
            cat["activation"] += result.numel()
        elif name in _POOLING:
            cat["pooling"] += _numel(args[0])
        elif name in _ELEMENTWISE:
            cat["elementwise"] += result.numel() if result is not None else 0
        return out

    def _add_macs(self, owner: str, kind: str, macs: int) -> None:
        self.flops[owner]["macs"] += macs
        self.kind_macs[owner][kind] += macs


@contextmanager
def _track_modules(model: nn.Module, counter: _OpCounter, shapes: dict[str, tuple[int, ...]]) -> Iterator[None]:
    handles = []
    for name, module in model.named_modules():

        def pre(_m: nn.Module, _inp: Any, name: str = name) -> None:
            counter.stack.append(name)

        def post(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
            counter.stack.pop()
            t = _first_tensor(out)
            if t is not None:
                shapes[name] = tuple(t.shape)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _param_kind(module: nn.Module, traced_kind: str | None) -> str:
    if traced_kind is not None:
        return traced_kind
    if isinstance(module, nn.Linear):
        return "linear"
    return "other"


@torch.no_grad()
def profile_model(model: nn.Module, input_size: int | tuple[int, int] = 224, *, batch: int = 1) -> Profile:
    """Count parameters, MACs and FLOPs of one eval-mode forward pass on a zero image.

    Args:
        model: the network; it is put in eval mode for the pass and restored afterwards.
        input_size: square side, or (height, width).
        batch: batch size of the traced pass (counts scale linearly with it).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    in_chs = input_channels(model)
    x = torch.zeros(batch, in_chs, h, w)
    counter = _OpCounter()
    counter.ignore_storage_of([x, *model.parameters(), *model.buffers()])
    shapes: dict[str, tuple[int, ...]] = {}
    was_training = model.training
    model.eval()
    try:
        with _track_modules(model, counter, shapes), counter:
            out = model(x)
    finally:
        model.train(was_training)

    layers: list[LayerStats] = []
    params_by_kind = dict.fromkeys(KINDS, 0)
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        kind = _param_kind(module, counter.conv_kinds.get(name))
        params_by_kind[kind] += own
        flops = sum(counter.flops[name].values()) if name in counter.flops else 0
        if own or flops:
            layers.append(
                LayerStats(
                    name=name or "(model)",
                    type=type(module).__name__,
                    kind=kind,
                    params=own,
                    macs=counter.flops[name]["macs"] if name in counter.flops else 0,
                    flops=flops,
                    output_shape=shapes.get(name, ()),
                )
            )
    by_cat = dict.fromkeys(FLOP_CATEGORIES, 0)
    macs_by_kind = dict.fromkeys(KINDS, 0)
    for owner, cats in counter.flops.items():
        for c, v in cats.items():
            by_cat[c] += v
        for k, v in counter.kind_macs[owner].items():
            macs_by_kind[k] += v
    params = sum(p.numel() for p in model.parameters())
    return Profile(
        params=params,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=by_cat["macs"],
        flops=sum(by_cat.values()),
        flops_by_category=by_cat,
        activations=counter.activations,
        peak_activation_bytes=counter.peak_bytes,
        input_shape=tuple(x.shape),
        output_shape=tuple(out.shape),
        macs_by_kind=macs_by_kind,
        params_by_kind=params_by_kind,
        layers=layers,
    )


def input_channels(model: nn.Module) -> int:
    """Input channels of an image model: those of its first 2-D convolution (3 when it has none)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3
