"""Deploy-time re-parameterisation: apply every block's ``fuse()`` in one pass."""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["reparameterize_model"]


def reparameterize_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Return ``model`` in eval mode with every block that offers ``fuse()`` fused.

    Blocks are fused children first, so a block's ``fuse()`` sees its sub-blocks already in deploy form.
    The result computes the same function as the eval-mode input (to float rounding) with fewer layers.

    Args:
        model: any module; it is not modified unless ``inplace`` is True.
        inplace: fuse ``model`` itself instead of a deep copy.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    # Pre-order lists parents before children; reversed, every child is fused before its parent.
    for module in reversed(list(model.modules())):
        fuse = getattr(module, "fuse", None)
        if callable(fuse):
            fuse()
    return model
