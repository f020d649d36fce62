"""What every dataset loader shares: the error type, the in-memory split, and file checksums."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsnet.errors import HSNetError
from hsnet.toolbox.digests import file_digests

__all__ = ["DataError", "ImageArrays", "SPLITS", "check_split", "default_data_dir", "verify_digest"]

SPLITS = ("train", "test")


class DataError(HSNetError):
    """A dataset is missing, malformed or fails its checksum; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare by identity
class ImageArrays:
    """One whole split of a dataset in memory, as decoded from disk (no resizing, no normalization).

    Attributes:
        images: uint8 array (N, H, W, C) with C = 1 (grayscale) or 3 (RGB), C-contiguous.
        labels: int64 array (N,), every value in ``range(len(classes))``.
        classes: class names; ``labels`` index into it.
        name: dataset name, one of :data:`hsnet.data.DATASETS`.
        split: ``"train"`` or ``"test"``.
        source: the folder (or file) the split was read from, for messages and run records.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str
    source: str

    def __post_init__(self) -> None:
        # Invariants of our own loaders (user input is validated, with DataError, before this point).
        assert self.images.dtype == np.uint8 and self.images.ndim == 4 and self.images.shape[3] in (1, 3)
        assert self.labels.dtype == np.int64 and self.labels.shape == (self.images.shape[0],)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Number of images of each class, shape (num_classes,)."""
        return np.bincount(self.labels, minlength=len(self.classes))


def default_data_dir() -> Path:
    """Where datasets are looked for, and downloaded to, when no data dir is given.

    ``$HSNET_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/hsnet/datasets`` (``~/.cache/hsnet/datasets``).
    """
    if os.environ.get("HSNET_DATA_DIR"):
        return Path(os.environ["HSNET_DATA_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hsnet" / "datasets"


def check_split(split: str) -> str:
    """Return ``split`` if it is valid.

    Raises:
        DataError: for anything but ``"train"`` or ``"test"``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def verify_digest(path: Path, expected: Iterable[str], *, what: str = "") -> None:
    """Check that the file's md5 or sha256 is one of ``expected`` (each ``"md5:<hex>"`` or ``"sha256:<hex>"``).

    Raises:
        DataError: naming the file, what was expected and what was found, and the ``verify=False`` escape hatch.
    """
    expected = list(expected)
    algorithms = sorted({e.split(":", 1)[0] for e in expected})
    got = file_digests(path, algorithms)
    if any(got[e.split(":", 1)[0]] == e.split(":", 1)[1].lower() for e in expected):
        return
    found = ", ".join(f"{a}:{h}" for a, h in got.items())
    raise DataError(
        f"{path}: checksum mismatch{f' for {what}' if what else ''}: expected {' or '.join(expected)}, got {found} "
        "(a corrupted or modified file; re-download it, or pass verify=False / --no-verify for your own files)"
    )
