"""Real images for parity checks and int8 calibration: Fashion-MNIST (the default), the user's own image folder,
or a ``.npy`` array.

Every source comes out the same way: float32 NCHW input normalized with the model's mean/std, labels and class
names where the source has them, and one line saying what the images are. Fashion-MNIST images resized to the
model's input prove that an artifact computes what the PyTorch model computes; they say nothing about accuracy in
the domain of a model trained on other data, and the description says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from deploy.errors import DeployError

__all__ = [
    "CALIBRATION_IMAGES",
    "FASHION_MNIST",
    "Images",
    "check_source",
    "load_calibration",
    "load_images",
    "parity_images",
]

#: Real training images used to calibrate int8 when no calibration data is given.
CALIBRATION_IMAGES = 128
#: The name that selects the default source.
FASHION_MNIST = "fashion-mnist"

ImageSource = Path | str | np.ndarray | None


@dataclass(frozen=True)
class Images:
    """Images ready for a model.

    Attributes:
        x: read-only float32 ``(N, C, S, S)`` normalized input.
        labels: int64 labels (``None`` for a ``.npy`` source, which has none).
        classes: class names of ``labels``.
        description: one line: how many images, from where, and what they can prove.
        default: True for the Fashion-MNIST stand-in (not the user's own images).
        source: the short name parity lines use ("imgs.npy", "image folder X"); empty for Fashion-MNIST.
    """

    x: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...] | None
    description: str
    default: bool = False
    source: str = ""


@lru_cache(maxsize=8)
def _fashion(
    count: int, input_size: int, mean: tuple[float, ...], std: tuple[float, ...], split: str, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from hsnet.data import real_images

    x, labels, classes = real_images(count, input_size, mean=mean, std=std, split=split, seed=seed, in_chans=len(mean))
    x.setflags(write=False)
    labels.setflags(write=False)
    return x, labels, tuple(classes)


def parity_images(
    count: int,
    input_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    split: str = "test",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``count`` real Fashion-MNIST images (class-balanced, fixed by ``seed``) as normalized model input.

    Returns:
        (read-only float32 NCHW images, int64 labels, class names).

    Raises:
        HSNetError: Fashion-MNIST is not installed (the message says how to get it).
    """
    return _fashion(count, input_size, tuple(mean), tuple(std), split, seed)


def check_source(source: ImageSource, what: str) -> None:
    """Fail early (before any work) on a source that cannot be read: a missing path, a file that is no ``.npy``,
    a ``.npy`` of the wrong dtype or layout. The size against the model is checked by :func:`load_images`."""
    if source is None or isinstance(source, np.ndarray) or source == FASHION_MNIST:
        if isinstance(source, np.ndarray):
            _check_array(source, what)
        return
    path = Path(source)
    if path.is_dir():
        return
    if not path.exists():
        raise DeployError(f"{what} {path}: no such file or folder; give an image folder, a .npy file or "
                          f"'{FASHION_MNIST}'")  # fmt: skip
    _check_array(_read_npy(path, what), f"{what} {path}")


def _read_npy(path: Path, what: str) -> np.ndarray:
    if path.suffix.lower() != ".npy":
        raise DeployError(f"{what} {path}: give an image folder, a .npy file or '{FASHION_MNIST}'")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeployError(f"{what} {path}: not a readable .npy array ({first})") from None


def _check_array(arr: np.ndarray, what: str) -> None:
    nchw_float = arr.dtype == np.float32 and arr.ndim == 4
    nhwc_uint8 = arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[3] in (1, 3)
    if not (nchw_float or nhwc_uint8) or len(arr) == 0:
        raise DeployError(
            f"{what} has dtype {arr.dtype} and shape {tuple(arr.shape)}; expected float32 (N, C, H, W) "
            "normalized NCHW, or uint8 (N, H, W, 1|3) images"
        )


def load_images(
    source: ImageSource,
    *,
    count: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    split: str = "test",
    seed: int = 0,
    what: str = "parity images",
) -> Images:
    """Up to ``count`` images from ``source`` as normalized input of a model with ``input_size`` and ``mean``.

    Args:
        source: ``None`` or ``"fashion-mnist"`` (class-balanced Fashion-MNIST ``split`` images, resized), an image
            folder (the layouts of :mod:`hsnet.data.folder`; ``split`` picks its images, the whole folder when
            that split is empty), a ``.npy`` file or an array: float32 ``(N, C, S, S)`` already normalized, or
            uint8 images ``(N, H, W, 1|3)`` (resized and normalized here).
        count: the most images to take (a class-balanced selection fixed by ``seed`` where there are labels).

    Raises:
        DeployError: unreadable source, wrong dtype or shape (the message says what is expected), NaN/Inf values.
        HSNetError: Fashion-MNIST is not installed (says how to get it).
    """
    chans = len(mean)
    if source is None or (isinstance(source, str) and source == FASHION_MNIST):
        x, labels, classes = parity_images(count, input_size, mean=mean, std=std, split=split, seed=seed)
        text = (
            f"{len(x)} Fashion-MNIST {split} images resized to {input_size}x{input_size}: they prove parity, not "
            "accuracy in your model's domain"
        )
        return Images(x, labels, classes, text, default=True)
    from hsnet.data import to_model_input
    from hsnet.data.preprocess import balanced_indices

    if isinstance(source, np.ndarray):
        arr, where, labels, classes, short = source, "array", None, None, "given"
    elif Path(source).is_dir():
        arr, labels, classes, where = _folder(Path(source), split, input_size, what)
        short = f"{Path(source).name}/"
    else:
        check_source(source, what)
        arr, where, labels, classes, short = _read_npy(Path(source), what), str(source), None, None, Path(source).name
    _check_array(arr, f"{what} {where}")
    if labels is not None:
        idx = np.sort(balanced_indices(labels, min(count, len(labels)), seed=seed))
        arr, labels = arr[idx], labels[idx]
    else:
        arr = arr[:count]
    if arr.dtype == np.uint8:
        x = to_model_input(arr, input_size=input_size, in_chans=chans, mean=mean, std=std)
        kind = "uint8 images"
    elif arr.shape[1:] == (chans, input_size, input_size):
        if not np.isfinite(arr).all():
            raise DeployError(f"{what} {where}: contains NaN or infinite values")
        x, kind = np.ascontiguousarray(arr), "float32 images"
    else:
        raise DeployError(
            f"{what} {where} has dtype {arr.dtype} and shape {tuple(arr.shape)}; expected float32 (N, {chans}, "
            f"{input_size}, {input_size}) normalized NCHW, or uint8 (N, H, W, 1|3) images"
        )
    x.setflags(write=False)
    return Images(x, labels, classes, f"{len(x)} {kind} from {where}", source=short)


def _folder(root: Path, split: str, size: int, what: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    from hsnet.data.base import DataError
    from hsnet.data.folder import load_folder

    try:
        arrays = load_folder(root, split, image_size=size)
        if len(arrays.labels) == 0:
            other = "train" if split == "test" else "test"
            arrays = load_folder(root, other, image_size=size)
    except DataError as e:
        raise DeployError(f"{what}: {e}") from None
    if len(arrays.labels) == 0:
        raise DeployError(f"{what} {root}: no images found (one sub-folder per class, image files inside)")
    return arrays.images, arrays.labels, tuple(arrays.classes), f"image folder {root} ({arrays.split})"


def load_calibration(
    source: ImageSource,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    count: int = CALIBRATION_IMAGES,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """int8 calibration images (training split of the source) as float32 NCHW normalized input.

    ``source`` as in :func:`load_images`; a ``.npy`` or array is taken whole.

    Returns:
        (images, one-line description of where they came from).
    """
    n = count if source is None or isinstance(source, str) and source == FASHION_MNIST else 1 << 30
    got = load_images(source, count=n, input_size=input_size, mean=mean, std=std, split="train", seed=seed,
                      what="calibration data")  # fmt: skip
    if got.default:
        return np.array(got.x), f"{len(got.x)} Fashion-MNIST train images"
    return np.array(got.x), f"calibration data: {got.description}"
