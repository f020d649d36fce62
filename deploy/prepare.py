"""Stage 1: the model to export: weights (checkpoint or seeded random), eval mode, re-parameterised, rewritten.

Two models come out: ``reference`` (the model as trained, in eval mode; every parity check compares against
it) and ``model`` (BatchNorm folded and branches merged by :func:`hsnet.reparameterize_model`, then the export
rewrites of :mod:`deploy.rewrites`), which is what every target converts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy.errors import DeployError
from deploy.metadata import ModelMetadata
from deploy.rewrites import AppliedRewrite, apply_export_rewrites
from hsnet.errors import HSNetError
from hsnet.layers.reparam import batchnorm_modules, reparameterize_model
from hsnet.registry import create_model, model_info
from hsnet.toolbox.digests import file_sha256

__all__ = [
    "PreparedModel",
    "class_labels",
    "normalization",
    "prepare_model",
    "prepare_module",
    "randomize_batchnorm",
    "state_sha256",
]


@dataclass
class PreparedModel:
    """The output of :func:`prepare_model`.

    Attributes:
        name: registry name, or the name given to the user's module.
        reference: the model as loaded (eval mode, not fused): what parity compares against.
        model: ``reference`` re-parameterised and rewritten for export (eval mode).
        fused: ``reference`` re-parameterised, not rewritten (what PyTorch itself runs: the pt2 target).
        labels: class names, one per logit.
        mean: per-channel normalization mean (0..1 pixel units).
        std: per-channel normalization std.
        input_size: square input side.
        weights: ``"checkpoint sha256:<hex>"`` or ``"random seed=<n>"``.
        checkpoint: the checkpoint file, if any.
        rewrites: module swaps applied for export.
        unfolded_batchnorm: BatchNorm layers no Conv/Linear could absorb (exported as BatchNormalization).
        onnx: for an export that starts from the user's ONNX file (:func:`prepare_onnx`), that file; ``reference``
            is then the file run by onnxruntime and there is no PyTorch ``model``
            (a :class:`deploy.onnx_import.OnnxSource`; :func:`deploy.onnx_import.prepare_onnx`).
    """

    name: str
    reference: nn.Module
    model: nn.Module | None
    fused: nn.Module | None
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    weights: str
    checkpoint: Path | None = None
    rewrites: list[AppliedRewrite] = field(default_factory=list)
    unfolded_batchnorm: list[str] = field(default_factory=list)
    onnx: Any = None

    @property
    def trained(self) -> bool:
        """True for weights someone trained (a checkpoint or the user's module), False for seeded random ones."""
        return not self.weights.startswith("random seed=")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def in_chans(self) -> int:
        return len(self.mean)

    def metadata(self, precision: str = "fp32", input_layout: str = "NCHW") -> ModelMetadata:
        """The metadata every artifact of this model carries."""
        from hsnet import __version__

        return ModelMetadata(
            model=self.name,
            labels=self.labels,
            mean=self.mean,
            std=self.std,
            input_size=self.input_size,
            weights=self.weights,
            hsnet_version=__version__,
            precision=precision,
            input_layout=input_layout,
            rewrites=tuple(sorted({r.rewrite for r in self.rewrites})),
        )


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm seeded, non-trivial statistics and affine terms.

    A freshly initialised BatchNorm is the identity, so folding it would be tested on nothing; random exports
    (tests, latency benchmarks) get these instead, and their parity checks then exercise the folding.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            if m.affine:
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def prepare_model(
    name: str,
    *,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    seed: int = 0,
) -> PreparedModel:
    """Load (or randomly initialise) a registered model and turn it into its export form.

    Args:
        name: registry name; a checkpoint must hold this model.
        checkpoint: an hsnet checkpoint (loaded with ``weights_only=True``); ``None`` for seeded random weights
            with randomized BatchNorm statistics (:func:`randomize_batchnorm`).
        num_classes: classifier width; with a checkpoint it must match the checkpoint's.
        input_size: square input side (default: the checkpoint's, else the model's declared size).
        seed: seed of the random weights (ignored with a checkpoint).

    Raises:
        HSNetError: unknown model, unreadable or mismatched checkpoint, or an input size the model cannot run at.
    """
    info = model_info(name)
    if checkpoint is not None:
        from hsnet.checkpoint import load_model

        checkpoint = Path(checkpoint)
        try:
            reference, ckpt = load_model(checkpoint, model=name, num_classes=num_classes)
        except HSNetError:
            raise
        except Exception as e:  # noqa: BLE001 - torch.load meets arbitrary bytes with arbitrary exception types
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise DeployError(
                f"checkpoint {checkpoint} is truncated or corrupt ({type(e).__name__}: {first})"
            ) from None
        labels = tuple(ckpt.classes)
        mean, std = tuple(ckpt.mean), tuple(ckpt.std)
        size = input_size or ckpt.input_size
        weights = f"checkpoint sha256:{file_sha256(checkpoint)}"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reference = create_model(name, num_classes=num_classes)
        randomize_batchnorm(reference, seed)
        k = num_classes or info.num_classes
        labels = tuple(f"class_{i}" for i in range(k))
        mean, std = tuple(info.mean), tuple(info.std)
        size = input_size or info.input_size
        weights = f"random seed={seed}"
    reference.eval()
    return _finish(name, reference, labels, mean, std, size, weights, checkpoint, info.test_sizes)


def prepare_module(
    module: nn.Module,
    example_input: torch.Tensor,
    *,
    name: str = "model",
    labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> PreparedModel:
    """Turn any ``nn.Module`` (the user's own network) into its export form, as :func:`prepare_model` does for
    registered models: eval mode, blocks fused, Conv/BN and Linear/BN pairs folded, export rewrites.

    Args:
        module: the network; it is deep-copied, never modified.
        example_input: one float32 NCHW batch of the shape it runs at (square images: ``(B, C, S, S)``).
        name: the name artifacts and the manifest carry (``[A-Za-z0-9_.-]``).
        labels: one class name per logit [default: ``class_0``...].
        mean: per-channel normalization mean in 0..1 pixel units [default: 0.5 per channel].
        std: per-channel std [default: 0.5 per channel].

    Raises:
        DeployError: not a module, an input that is not a square NCHW float batch, labels/mean/std of the wrong
            length, a forward pass that fails or does not return ``(batch, classes)`` logits.
    """
    import copy
    import re

    if not isinstance(module, nn.Module):
        raise DeployError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise DeployError(f"model name {name!r}: use 1-64 letters, digits, '_', '.' or '-' (it names files)")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4 or not example_input.is_floating_point():
        raise DeployError("example_input must be a float tensor of shape (batch, channels, size, size)")
    b, c, h, w = example_input.shape
    if h != w:
        raise DeployError(f"example_input is {h}x{w}; hsnet deploys square inputs only (give (B, C, S, S))")
    mean, std = normalization(c, mean, std)
    reference = copy.deepcopy(module).float().eval()
    try:
        with torch.no_grad():
            out = reference(torch.zeros(1, c, h, w))
    except Exception as e:  # noqa: BLE001 - the user's forward may raise anything
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DeployError(f"{name} fails on a (1, {c}, {h}, {w}) input ({type(e).__name__}: {first})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DeployError(f"{name} must return logits of shape (batch, classes); it returned {shape}")
    k = int(out.shape[1])
    labels = class_labels(k, labels)
    weights = f"module sha256:{state_sha256(reference)}"
    return _finish(name, reference, labels, mean, std, int(h), weights, None, (int(h),))


def normalization(
    c: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std [default 0.5 each], checked against ``c`` input channels."""
    mean = tuple(float(v) for v in (mean if mean is not None else (0.5,) * c))
    std = tuple(float(v) for v in (std if std is not None else (0.5,) * c))
    if len(mean) != c or len(std) != c or any(s <= 0 for s in std):
        raise DeployError(f"mean and std need {c} values (one per input channel; std > 0), got {mean} and {std}")
    return mean, std


def class_labels(k: int, labels: Sequence[str] | None) -> tuple[str, ...]:
    """One class name per logit [default ``class_0``...]."""
    out = tuple(str(v) for v in labels) if labels is not None else tuple(f"class_{i}" for i in range(k))
    if len(out) != k:
        raise DeployError(f"{len(out)} labels given for {k} logits; give one label per logit")
    return out


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes and bytes, in ``state_dict`` order):
    the provenance of weights that come from no file."""
    import hashlib

    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _finish(
    name: str,
    reference: nn.Module,
    labels: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    size: int,
    weights: str,
    checkpoint: Path | None,
    sizes: tuple[int, ...],
) -> PreparedModel:
    """Re-parameterise and rewrite ``reference`` (eval mode) for export."""
    shape = (1, len(mean), size, size)
    _check_runs(reference, name, shape, sizes)
    fused = reparameterize_model(reference)
    model = reparameterize_model(reference)
    rewrites = apply_export_rewrites(model, shape)
    leftover = batchnorm_modules(model)
    return PreparedModel(
        name=name,
        reference=reference,
        model=model,
        fused=fused,
        labels=labels,
        mean=mean,
        std=std,
        input_size=size,
        weights=weights,
        checkpoint=checkpoint,
        rewrites=rewrites,
        unfolded_batchnorm=leftover,
    )


@torch.no_grad()
def _check_runs(model: nn.Module, name: str, shape: tuple[int, ...], sizes: tuple[int, ...]) -> None:
    """One forward pass; a size the model cannot run at is a user error naming the sizes it is tested at."""
    try:
        model(torch.zeros(shape))
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise HSNetError(
            f"{name} cannot run on a {shape[-1]}x{shape[-1]} input ({first}); it is tested at "
            f"{', '.join(map(str, sizes))}"
        ) from None
