"""Deploy-time re-parameterisation: apply every block's ``fuse()`` in one pass, then fold the standard PyTorch
Conv/BatchNorm and Linear/BatchNorm pairs of any other network (the user's own included) wherever they occur."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hsnet.layers.conv_bn_act import fold_bn, fuse_conv_bn

__all__ = ["batchnorm_modules", "fold_batchnorm", "fuse_linear_bn", "reparameterize_model"]

_BN = nn.modules.batchnorm._BatchNorm
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def fuse_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """Return a new Linear (with bias) computing ``bn(linear(x))`` using BN's running statistics."""
    scale, shift = fold_bn(bn)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True).to(linear.weight.device, linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale[:, None])
    bias = linear.bias if linear.bias is not None else torch.zeros_like(shift)
    fused.bias.copy_(bias * scale + shift)
    return fused


def _foldable(first: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(bn, _BN) or bn.running_mean is None or bn.training:
        return False
    if isinstance(first, _CONV):
        return first.out_channels == bn.num_features and not isinstance(first, nn.Conv3d)
    return isinstance(first, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and first.out_features == bn.num_features


def _fused(first: nn.Module, bn: nn.Module) -> nn.Module:
    return fuse_linear_bn(first, bn) if isinstance(first, nn.Linear) else fuse_conv_bn(first, bn)


def batchnorm_modules(model: nn.Module) -> list[str]:
    """Qualified names of the BatchNorm layers left in ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, _BN)]


def _fold_sequential(model: nn.Module) -> int:
    """Fold (Conv|Linear, BN) neighbours inside every ``nn.Sequential``; the BN becomes an Identity."""
    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            first, bn = seq._modules[a], seq._modules[b]
            if first is not None and bn is not None and _foldable(first, bn):
                seq._modules[a] = _fused(first, bn)
                seq._modules[b] = nn.Identity()
                folded += 1
    return folded


def _fold_traced(model: nn.Module) -> nn.Module | None:
    """Fold every BN whose only input is a Conv/Linear whose only user is that BN, found by tracing the forward
    pass with ``torch.fx``; ``None`` when the model cannot be traced symbolically (data-dependent control flow)."""
    from torch import fx

    try:
        graph_module = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - fx raises many types on untraceable Python
        return None
    modules = dict(graph_module.named_modules())
    changed = False
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN) or len(node.args) != 1:
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        first, bn = modules[src.target], modules[node.target]
        if not _foldable(first, bn):
            continue
        parent, _, leaf = src.target.rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, _fused(first, bn))
        node.replace_all_uses_with(src)
        graph_module.graph.erase_node(node)
        changed = True
    if not changed:
        return None
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold the BatchNorm layers that follow a Conv or Linear layer into it, in any eval-mode network.

    Neighbours inside an ``nn.Sequential`` are folded in place; the others (a Conv and a BN called one after the
    other in a custom ``forward``) are found by tracing the model with ``torch.fx``, which returns a
    ``GraphModule`` computing the same function. A BatchNorm with another input (after an addition, say) stays.
    """
    _fold_sequential(model)
    if not batchnorm_modules(model):
        return model
    traced = _fold_traced(model)
    return model if traced is None else traced


def reparameterize_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Return ``model`` in eval mode with every block that offers ``fuse()`` fused and Conv/BN pairs folded.

    Blocks are fused children first, so a block's ``fuse()`` sees its sub-blocks already in deploy form; then
    :func:`fold_batchnorm` folds the standard PyTorch pairs that remain (networks not built from hsnet's blocks).
    The result computes the same function as the eval-mode input (to float rounding) with fewer layers.

    Args:
        model: any module; it is not modified unless ``inplace`` is True.
        inplace: fuse ``model`` itself instead of a deep copy (a traced fold still returns a new module).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    # Pre-order lists parents before children; reversed, every child is fused before its parent.
    for module in reversed(list(model.modules())):
        fuse = getattr(module, "fuse", None)
        if callable(fuse):
            fuse()
    if batchnorm_modules(model):
        model = fold_batchnorm(model)
    return model
