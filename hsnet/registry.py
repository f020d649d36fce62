"""The model registry: one place that maps a stable model name to its builder and declared metadata.

Every public model entry point is registered with :func:`hsnet.models.registry.register_model`, which records a
:class:`ModelInfo` beside the builder. :func:`create_model` is the only way the CLI and the tests build
models, so a model is profiled, tested and exported the moment it is registered. Importing this module imports
:mod:`hsnet.models`, which runs every registration exactly once.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

from torch import nn

from hsnet.errors import HSNetError
from hsnet.models.registry import (
    _REGISTRY,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DuplicateModelError,
    ModelInfo,
    Reference,
    UnknownModelError,
    register_model,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "ModelInfo",
    "Reference",
    "UnknownModelError",
    "DuplicateModelError",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
]


def model_info(name: str) -> ModelInfo:
    """Return the declared metadata of a registered model.

    Raises:
        UnknownModelError: with close-match suggestions if ``name`` is not registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownModelError(f"unknown model {name!r}; {hint}valid names: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, *, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name, see :func:`list_models`.
        num_classes: classifier width; defaults to the model's declared ``num_classes``.
        **overrides: architecture overrides passed to the entry point (e.g. ``drop_rate``).

    Raises:
        UnknownModelError: if ``name`` is not registered (never substitutes a close match).
        HSNetError: if ``num_classes`` is not a positive integer, or an override is not one the builder takes or
            has another type than its default (one line naming the valid ones).
    """
    info = model_info(name)
    if num_classes is None:
        num_classes = info.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise HSNetError(f"num_classes must be a positive integer, got {num_classes!r}")
    assert info.builder is not None
    _check_overrides(name, info.builder, overrides)
    return info.builder(num_classes=num_classes, **overrides)


def _check_overrides(name: str, builder: Any, overrides: dict[str, Any]) -> None:
    """Each override names a keyword of ``builder`` and has its default's type; a builder that takes
    ``**kwargs`` checks them itself (:func:`hsnet.models.base.apply_overrides`)."""
    import inspect

    from hsnet.models.base import check_override_type

    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = {k: p.default for k, p in params.items() if k != "num_classes"}
    for key, value in overrides.items():
        if key not in known:
            valid = ", ".join(f"{k}={v!r}" for k, v in known.items() if v is not inspect.Parameter.empty)
            raise HSNetError(f"{name} takes no argument {key!r}; valid: {valid or 'none'}")
        if known[key] is not inspect.Parameter.empty:
            check_override_type(name, key, value, known[key])


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern`` (e.g. ``"cifar_*"``)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
