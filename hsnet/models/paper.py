"""Figures published in the HSNet paper, as data: what the reconstruction and the baselines are held to."""

from __future__ import annotations

from dataclasses import dataclass

from hsnet.models.registry import Reference

__all__ = [
    "PaperRow",
    "TABLE4",
    "TABLE4_INPUT_SIZE",
    "TABLE4_NUM_CLASSES",
    "cifar100_repo_reference",
    "table4_reference",
    "table4_row",
]

#: Table 4 is CIFAR-100 (100 classes); its FLOPs column fits 224x224 (upscaled) inputs (docs/hsnet.md).
TABLE4_NUM_CLASSES = 100
TABLE4_INPUT_SIZE = 224


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 4 (CIFAR-100). ``flops`` is None where the OCR of the paper is unreadable."""

    model: str
    label: str
    params_m: float
    flops: float | None
    top1_err: float
    top5_err: float


TABLE4: tuple[PaperRow, ...] = (
    PaperRow("ghostnet_100", "GhostNet", 4.00, 149.23e6, 36.22, 12.33),
    PaperRow("cifar_mobilenetv1", "MobileNet", 3.30, 2.34e9, 34.02, 10.56),
    PaperRow("cifar_mobilenetv2", "MobileNetV2", 2.36, None, 31.92, 9.02),
    PaperRow("cifar_squeezenet", "SqueezeNet", 0.78, 2.69e9, 30.59, 8.36),
    PaperRow("cifar_shufflenetv1", "ShuffleNet", 1.00, None, 29.94, 8.35),
    PaperRow("cifar_shufflenetv2", "ShuffleNetV2", 1.30, None, 30.49, 8.49),
    PaperRow("hsnet", "HSNet", 3.00, 231.87e6, 29.25, 8.41),
    PaperRow("cifar_vgg16_bn", "VGG16", 34.00, 15.48e9, 27.07, 8.84),
)


def table4_row(model: str) -> PaperRow | None:
    """The Table 4 row of a registry name, or None if the model is not in the table."""
    return next((r for r in TABLE4 if r.model == model), None)


def table4_reference(model: str, *, params_rtol: float, flops_rtol: float = 0.015) -> Reference:
    """Table 4's parameters and (where legible) FLOPs of ``model`` as a Reference: 100 classes, 224x224.

    The FLOPs are in the full convention of :mod:`hsnet.profiling` (docs/hsnet.md); parameter counts do not
    depend on the input size. ``params_rtol`` covers the table's rounding.
    """
    row = table4_row(model)
    if row is None:
        raise KeyError(f"{model!r} is not a row of Table 4")
    flops = "unreadable FLOPs" if row.flops is None else f"{row.flops / 1e6:g} M FLOPs"
    return Reference(
        params=row.params_m * 1e6,
        macs=None,
        flops=row.flops,
        num_classes=TABLE4_NUM_CLASSES,
        input_size=TABLE4_INPUT_SIZE,
        source=f"HSNet paper, Table 4 (CIFAR-100): {row.label} {row.params_m:.2f} M params, {flops}",
        params_rtol=params_rtol,
        flops_rtol=flops_rtol,
    )


def cifar100_repo_reference(path: str, params: float, macs: float) -> Reference:
    """Parameters and 32x32 MACs measured on the pytorch-cifar100 definition whose results Table 4 quotes."""
    return Reference(
        params=params,
        macs=macs,
        num_classes=TABLE4_NUM_CLASSES,
        input_size=32,
        source=f"weiaicunzai/pytorch-cifar100 {path}, measured (100 classes, 32x32)",
    )
