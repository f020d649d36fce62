"""One entry point for every dataset: :func:`load_arrays` by name, and :func:`real_images` for deploy checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hsnet.data.base import DataError, ImageArrays, check_split

__all__ = ["DATASETS", "check_dataset", "load_arrays", "real_images"]

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100", "folder")


def check_dataset(name: str) -> str:
    """Return ``name`` if it is a dataset name.

    Raises:
        DataError: listing the valid names.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return name


def load_arrays(
    name: str,
    split: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    verify: bool = True,
    image_size: int | None = None,
) -> ImageArrays:
    """Load one whole split of a dataset into memory, validated.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        data_dir: where the data is. ``None`` looks in the download cache (``~/.cache/hsnet/datasets``) and, for
            Fashion-MNIST, in Debian's ``/usr/share/datasets/fashion-mnist``. Required for ``"folder"``.
        download: fetch the official archive (checksum-verified) into ``data_dir`` (or the cache) if the data is
            not found. Nothing is ever downloaded otherwise.
        verify: check known checksums and official sizes; ``False`` for your own files in a standard format.
        image_size: side every image of a ``"folder"`` dataset is resized to (default
            :data:`hsnet.data.folder.DEFAULT_IMAGE_SIZE`); pass the model's input size to resize only once. Ignored
            by the named datasets, whose images all have one size already.

    Raises:
        DataError: unknown name or split, data not found (with how to get it), or malformed data naming the file.
    """
    check_dataset(name)
    check_split(split)
    if name == "folder":
        from hsnet.data.folder import DEFAULT_IMAGE_SIZE, load_folder

        if data_dir is None:
            raise DataError("the folder dataset needs a data dir (--data-dir ROOT with one sub-folder per class)")
        if download:
            raise DataError("--download is for the named datasets, not for an image folder")
        return load_folder(data_dir, split, image_size=image_size or DEFAULT_IMAGE_SIZE)
    if download:
        from hsnet.data.download import ensure_downloaded

        ensure_downloaded(name, data_dir)
    if name in ("mnist", "fashion-mnist"):
        from hsnet.data.mnist import find_idx_dir, load_idx_dataset

        return load_idx_dataset(name, split, find_idx_dir(name, split, data_dir), verify=verify)
    from hsnet.data.cifar import find_cifar_dir, load_cifar

    return load_cifar(name, split, find_cifar_dir(name, data_dir), verify=verify)


def real_images(
    count: int,
    input_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    split: str = "test",
    seed: int = 0,
    in_chans: int = 3,
    data_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``count`` real Fashion-MNIST images as model input, for parity checks and int8 calibration.

    The selection is fixed by ``seed`` and class-balanced (:func:`hsnet.data.preprocess.balanced_indices`), so
    every run and every machine sees the same images.

    Returns:
        (float32 (count, in_chans, input_size, input_size), int64 labels (count,), class names).

    Raises:
        DataError: Fashion-MNIST not found (says how to install it), or ``count`` out of range.
    """
    from hsnet.data.preprocess import balanced_indices, to_model_input

    arrays = load_arrays("fashion-mnist", split, data_dir=data_dir)
    idx = balanced_indices(arrays.labels, count, seed=seed)
    x = to_model_input(arrays.images[idx], input_size=input_size, in_chans=in_chans, mean=mean, std=std)
    return x, arrays.labels[idx].copy(), arrays.classes
