"""Stage 1: the model to export: weights (checkpoint or seeded random), eval mode, re-parameterised, rewritten.

Two models come out: ``reference`` (the model as trained, in eval mode; every parity check compares against
it) and ``model`` (BatchNorm folded and branches merged by :func:`hsnet.reparameterize_model`, then the export
rewrites of :mod:`deploy.rewrites`), which is what every target converts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from deploy.errors import DeployError
from deploy.metadata import ModelMetadata
from deploy.rewrites import AppliedRewrite, apply_export_rewrites
from hsnet.errors import HSNetError
from hsnet.layers.reparam import reparameterize_model
from hsnet.registry import create_model, model_info

__all__ = ["PreparedModel", "file_sha256", "prepare_model", "randomize_batchnorm"]


@dataclass
class PreparedModel:
    """The output of :func:`prepare_model`.

    Attributes:
        name: registry name.
        reference: the model as loaded (eval mode, not fused): what parity compares against.
        model: ``reference`` re-parameterised and rewritten for export (eval mode).
        labels: class names, one per logit.
        mean: per-channel normalization mean (0..1 pixel units).
        std: per-channel normalization std.
        input_size: square input side.
        weights: ``"checkpoint sha256:<hex>"`` or ``"random seed=<n>"``.
        checkpoint: the checkpoint file, if any.
        rewrites: module swaps applied for export.
    """

    name: str
    reference: nn.Module
    model: nn.Module
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    weights: str
    checkpoint: Path | None = None
    rewrites: list[AppliedRewrite] = field(default_factory=list)

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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    shape = (1, len(mean), size, size)
    _check_runs(reference, name, shape, info.test_sizes)
    model = reparameterize_model(reference)
    rewrites = apply_export_rewrites(model, shape)
    leftover = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise DeployError(f"{name}: BatchNorm left after re-parameterisation at {', '.join(leftover[:3])}")
    return PreparedModel(
        name=name,
        reference=reference,
        model=model,
        labels=labels,
        mean=mean,
        std=std,
        input_size=size,
        weights=weights,
        checkpoint=checkpoint,
        rewrites=rewrites,
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
