"""Figures published in the HSNet paper, as data: what the reconstruction and the baselines are held to."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaperRow", "TABLE4", "TABLE4_INPUT_SIZE", "TABLE4_NUM_CLASSES", "table4_row"]

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
