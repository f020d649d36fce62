"""Datasets: CIFAR-10/100 (python pickle folders), MNIST-format IDX (Fashion-MNIST), image folders.

Every loader returns an :class:`ImageArrays` (a whole split, uint8 NHWC, as decoded) after validating what it read;
:func:`to_model_input` (evaluation, deployment) and :mod:`hsnet.data.loader` (training batches) adapt channels and
size to the model. Nothing is downloaded unless asked (``download=True``), and then checksum-verified.
"""

from hsnet.data.base import DataError, ImageArrays
from hsnet.data.datasets import DATASETS, check_dataset, load_arrays, real_images
from hsnet.data.loader import ArrayDataset, BatchIterator, make_dataset, make_loader
from hsnet.data.preprocess import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    balanced_indices,
    channel_stats,
    dataset_stats,
    to_model_input,
)

__all__ = [
    "ArrayDataset",
    "BatchIterator",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASETS",
    "DataError",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "ImageArrays",
    "MNIST_MEAN",
    "MNIST_STD",
    "balanced_indices",
    "channel_stats",
    "check_dataset",
    "dataset_stats",
    "load_arrays",
    "make_dataset",
    "make_loader",
    "real_images",
    "to_model_input",
]
