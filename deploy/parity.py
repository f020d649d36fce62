"""Parity: does an artifact compute what the PyTorch model computes, on real images?

Every stage of an export is checked the same way: the reference (the PyTorch model as loaded, not fused, in
eval mode) and the artifact run the same real Fashion-MNIST test images (resized to the model's input,
normalized with its mean/std), and the logits are compared:

* **max abs error** and **max relative error** (max abs error / max |reference logit|). fp32 and fp16 bound the
  maximum over all images; int8 bounds the error of the 99th-percentile image (``error_quantile``), since a worst
  case over a few outlier images grows with the number of images checked while accuracy does not move (HSNet
  trained on Fashion-MNIST, int8 TFLite on all 10 000 test images: 99th percentile 7.1 %, max 27.3 %, top-1
  accuracy 92.36 % -> 92.33 %);
* **top-1 agreement**: the share of images whose top-1 class is the same. A disagreement where the reference's
  own margin between the two classes is within twice that image's max abs error (itself within tolerance) is a
  near tie the allowed error explains: it is reported and does not count against the bound. (int8 on random
  weights, whose logits are nearly flat, has many: 8 of 32 images for HSNet at 32x32, every one of its
  disagreements; with trained weights the accuracy drop is the bound that matters);
* with a labelled set and trained weights: **top-1 accuracy** of both and the **drop** (percentage points).

The tolerances, one row per precision, are :data:`TOLERANCES` (documented in docs/deploy.md). A check that
fails raises :class:`deploy.errors.ParityError` carrying the :class:`ParityResult`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.artifact import Artifact
from deploy.errors import DeployError, ParityError

__all__ = [
    "TOLERANCES",
    "ParityResult",
    "Tolerance",
    "check_parity",
    "compare_logits",
    "measure_parity",
    "predict",
    "reference_logits",
]


@dataclass(frozen=True)
class Tolerance:
    """What an artifact of one precision must meet.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        max_rel_error: bound on |artifact - reference| / max |reference|, taken per image as the image's largest
            logit error, over the ``error_quantile`` share of images.
        error_quantile: 1.0 bounds every image (the maximum); 0.99 lets the worst 1 % of images, rounded down,
            exceed the bound (none of 64, 10 of 1000).
        min_top1_agreement: bound on the share of images with the same top-1 class (near ties count as agreeing).
        max_accuracy_drop: bound on the top-1 accuracy drop in percentage points, checked only with a labelled
            set and trained weights; None where ``min_top1_agreement`` is 100 % (the same top-1 classes up to
            near ties give the same accuracy up to near ties).
    """

    precision: str
    max_rel_error: float
    min_top1_agreement: float
    max_accuracy_drop: float | None
    error_quantile: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The one table of parity tolerances (docs/deploy.md explains each figure).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", max_rel_error=1e-4, min_top1_agreement=1.0, max_accuracy_drop=None),
    "fp16": Tolerance("fp16", max_rel_error=2e-2, min_top1_agreement=1.0, max_accuracy_drop=None),
    "int8": Tolerance("int8", max_rel_error=0.25, min_top1_agreement=0.80, max_accuracy_drop=1.0, error_quantile=0.99),
}


@dataclass
class ParityResult:
    """The figures of one parity check and what they were measured with.

    Attributes:
        stage: which stage this checks (e.g. ``"prepare"``, ``"onnx"``, ``"tflite/int8"``).
        precision: precision of the artifact (selects the tolerance).
        runtime: what ran the artifact (``onnxruntime``, ``tflite``, ``torch``...) and ``runtime_version``.
        threads: intra-op threads of the runtime (None: its default).
        batch: batch size of each call.
        images: number of images compared; ``split`` the dataset split they come from; ``source`` what they are
            (empty: Fashion-MNIST).
        max_abs_error: max |artifact - reference| over all logits.
        max_rel_error: ``max_abs_error`` / max |reference logit|.
        quantile_rel_error: the relative error of the image at the tolerance's ``error_quantile`` (what is bounded;
            equal to ``max_rel_error`` when the quantile is 1).
        top1_agreement: share of images with the same top-1 class.
        near_ties: disagreements explained by an error within tolerance (see module docstring).
        accuracy_reference / accuracy_artifact / accuracy_drop: top-1 accuracy (%) and drop (points); None
            without labels.
        passed: all bounds of ``tolerance`` are met; ``failures`` says which are not.
    """

    stage: str
    precision: str
    runtime: str
    runtime_version: str
    threads: int | None
    batch: int
    images: int
    split: str
    max_abs_error: float
    max_rel_error: float
    quantile_rel_error: float
    top1_agreement: float
    near_ties: int
    accuracy_reference: float | None
    accuracy_artifact: float | None
    accuracy_drop: float | None
    tolerance: Tolerance
    failures: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def context(self) -> str:
        """What measured it: runtime and version, threads, batch, precision."""
        threads = "default" if self.threads is None else self.threads
        return f"{self.runtime} {self.runtime_version}, {threads} threads, batch {self.batch}, {self.precision}"

    def describe(self) -> str:
        """One line for people: the figures and what measured them."""
        acc = ""
        if self.accuracy_drop is not None:
            acc = (
                f", top-1 {self.accuracy_reference:.2f}% -> {self.accuracy_artifact:.2f}% "
                f"(drop {self.accuracy_drop:.2f} points)"
            )
        verdict = "ok" if self.passed else "FAILED: " + "; ".join(self.failures)
        q = self.tolerance.error_quantile
        quantile = "" if q >= 1 else f" (p{100 * q:g} image {self.quantile_rel_error:.2e})"
        return (
            f"{self.stage}: max abs {self.max_abs_error:.2e}, rel {self.max_rel_error:.2e}{quantile}, top-1 agreement "
            f"{_percent(self.top1_agreement)}% ({self.near_ties} near ties){acc} on {self.images} "
            f"{self.source or 'Fashion-MNIST ' + self.split} images [{self.context()}] {verdict}"
        )


def _percent(share: float) -> str:
    """A share in percent with one decimal, or two where one would round a shortfall up to 100.0."""
    text = f"{100 * share:.1f}"
    return f"{100 * share:.2f}" if text == "100.0" and share < 1 else text


@torch.no_grad()
def reference_logits(model: nn.Module, x: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """Logits of the PyTorch ``model`` (eval mode) on ``x``, float32, computed ``batch`` images at a time."""
    model.eval()
    out = [model(torch.tensor(x[i : i + batch])) for i in range(0, len(x), batch)]  # copies: x may be read-only
    return torch.cat(out).numpy().astype(np.float32)


def _call_batch(artifact: Artifact) -> int:
    first = artifact.input_spec.shape[0] if artifact.input_spec.shape else -1
    return first if first > 0 else 16


def predict(artifact: Artifact, x: np.ndarray) -> np.ndarray:
    """Run ``artifact`` on any number of images: calls of the artifact's fixed batch (the last one padded by
    repeating its final image) or of 16 images for a dynamic batch.

    Raises:
        DeployError: the artifact returns something other than one row of logits per image.
    """
    step = _call_batch(artifact)
    outs = []
    for i in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[i : i + step], dtype=np.float32)
        n = len(chunk)
        if n < step and artifact.input_spec.shape[0] > 0:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        out = np.asarray(artifact(chunk))
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise DeployError(f"{artifact.path.name} returned shape {out.shape} for a batch of {len(chunk)}")
        outs.append(out[:n])
    return np.concatenate(outs).astype(np.float32)


def compare_logits(
    reference: np.ndarray,
    output: np.ndarray,
    *,
    precision: str,
    stage: str,
    runtime: str,
    runtime_version: str,
    threads: int | None,
    batch: int,
    labels: np.ndarray | None = None,
    split: str = "test",
    source: str = "",
) -> ParityResult:
    """Compare two sets of logits (images x classes) against the tolerance of ``precision``.

    Args:
        labels: true classes, only for a labelled set with trained weights (enables the accuracy bound).

    Raises:
        DeployError: unknown precision, or shapes that differ (that is a broken artifact, not a tolerance).
    """
    if precision not in TOLERANCES:
        raise DeployError(f"no parity tolerance for precision {precision!r}; valid: {', '.join(TOLERANCES)}")
    tol = TOLERANCES[precision]
    if reference.shape != output.shape:
        raise DeployError(f"{stage}: output shape {output.shape} differs from the model's {reference.shape}")
    ref = reference.astype(np.float64)
    out = output.astype(np.float64)
    diff = np.abs(out - ref)
    finite = bool(np.isfinite(out).all())
    max_abs = float(diff.max()) if finite else float("inf")
    scale = float(np.abs(ref).max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    top_ref, top_out = ref.argmax(1), out.argmax(1)
    top_out[~np.isfinite(out).all(1)] = -1  # an image with a NaN or infinite logit agrees with nothing
    rows = np.arange(len(ref))
    margin = ref[rows, top_ref] - ref[rows, top_out]
    disagree = top_ref != top_out
    image_error = diff.max(1)
    quantile_rel = max_rel
    if finite and scale > 0:  # at most floor((1 - quantile) * images) images may exceed the bound
        excused_images = int((1 - tol.error_quantile) * len(image_error) + 1e-9)
        quantile_rel = float(np.sort(image_error)[len(image_error) - 1 - excused_images]) / scale
    ties = disagree & (margin <= 2 * image_error) & (image_error <= tol.max_rel_error * scale)
    agreement = float((~disagree).mean())
    excused = ties
    agreement_with_ties = float((~disagree | excused).mean())
    acc_ref = acc_out = drop = None
    if labels is not None:
        acc_ref = float(100 * (top_ref == labels).mean())
        acc_out = float(100 * (top_out == labels).mean())
        drop = acc_ref - acc_out
    failures = []
    if not finite:
        failures.append("non-finite logits")
    if quantile_rel > tol.max_rel_error:
        which = "max" if tol.error_quantile >= 1 else f"{100 * tol.error_quantile:g}th-percentile image's"
        failures.append(f"{which} relative error {quantile_rel:.2e} > {tol.max_rel_error:g}")
    if agreement_with_ties < tol.min_top1_agreement:
        bound = 100 * tol.min_top1_agreement
        failures.append(f"top-1 agreement {_percent(agreement_with_ties)}% (near ties excused) < {bound:.0f}%")
    if drop is not None and tol.max_accuracy_drop is not None and drop > tol.max_accuracy_drop:
        failures.append(f"top-1 accuracy drop {drop:.2f} points > {tol.max_accuracy_drop:g}")
    return ParityResult(
        stage=stage,
        precision=precision,
        runtime=runtime,
        runtime_version=runtime_version,
        threads=threads,
        batch=batch,
        images=len(ref),
        split=split,
        source=source,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        quantile_rel_error=quantile_rel,
        top1_agreement=agreement,
        near_ties=int(ties.sum()),
        accuracy_reference=acc_ref,
        accuracy_artifact=acc_out,
        accuracy_drop=drop,
        tolerance=tol,
        failures=failures,
    )


def measure_parity(
    artifact: Artifact,
    reference: nn.Module | np.ndarray,
    x: np.ndarray,
    *,
    precision: str,
    stage: str,
    labels: np.ndarray | None = None,
    split: str = "test",
    source: str = "",
) -> ParityResult:
    """Run ``artifact`` on images ``x`` and compare with ``reference`` (a model, or its logits on ``x``).

    ``labels`` enables the accuracy figures; pass them only for trained weights on the labelled set.
    """
    ref = reference if isinstance(reference, np.ndarray) else reference_logits(reference, x)
    out = predict(artifact, x)
    return compare_logits(
        ref,
        out,
        precision=precision,
        stage=stage,
        runtime=artifact.runtime,
        runtime_version=artifact.runtime_version,
        threads=artifact.threads,
        batch=_call_batch(artifact),
        labels=labels,
        split=split,
        source=source,
    )


def check_parity(
    artifact: Artifact,
    reference: nn.Module | np.ndarray,
    x: np.ndarray,
    *,
    precision: str,
    stage: str,
    labels: np.ndarray | None = None,
    split: str = "test",
    source: str = "",
) -> ParityResult:
    """:func:`measure_parity`, raising if the tolerance is not met.

    Raises:
        ParityError: one line with the figures and the failed bounds; ``.result`` holds the
            :class:`ParityResult`.
    """
    result = measure_parity(artifact, reference, x, precision=precision, stage=stage, labels=labels, split=split,
                            source=source)  # fmt: skip
    raise_if_failed(result)
    return result


def raise_if_failed(result: ParityResult) -> None:
    """Raise :class:`ParityError` (with ``.result``) if ``result`` did not pass."""
    if not result.passed:
        err = ParityError(f"parity check failed at {result.describe()}")
        err.result = result  # type: ignore[attr-defined]
        raise err
