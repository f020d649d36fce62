"""Your own images: a folder tree with one sub-folder per class.

Two layouts are accepted:

* ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``: the splits are what the folders say. Class names come from
  ``ROOT/train`` (or ``ROOT/test`` if there is no train folder); a test class that is not a train class is an error.
* ``ROOT/<class>/*``: no split folders, so the split is a fixed rule: an image is in ``test`` when the first four
  bytes of ``sha1("<class>/<file name>")`` read as a big-endian integer are divisible by 5 (about 20 %), otherwise
  in ``train``. The rule depends only on the names, so adding images never moves an existing one between splits.

Class names are the folder names, sorted (label ``i`` is the ``i``-th name). Images are files whose suffix is one of
:data:`IMAGE_SUFFIXES` (any case); other files and hidden entries are ignored. Every image is decoded with Pillow,
converted to RGB, scaled so that its shorter side is ``image_size`` and center-cropped to ``image_size`` x
``image_size`` (bilinear, antialiased when shrinking), so the whole split fits one uint8 array; pass the model's
input size to avoid resizing twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hsnet.data.base import DataError, ImageArrays, check_split
from hsnet.toolbox.progress import progress

__all__ = ["DEFAULT_IMAGE_SIZE", "IMAGE_SUFFIXES", "folder_layout", "load_folder"]

DEFAULT_IMAGE_SIZE = 64
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DataError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _in_test(class_name: str, file_name: str) -> bool:
    digest = hashlib.sha1(f"{class_name}/{file_name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 5 == 0


def folder_layout(root: str | Path, split: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names and the (file, label) list of one split, without decoding anything.

    Raises:
        DataError: root missing, no class folders, an empty class folder, a test class unknown to train, or an
            empty split.
    """
    check_split(split)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    split_dirs = {s: root / s for s in ("train", "test") if (root / s).is_dir()}
    if split_dirs:
        class_root = split_dirs.get("train", split_dirs.get("test"))
        classes = tuple(p.name for p in _visible_dirs(class_root))
        if not classes:
            raise DataError(f"{class_root}: no class folders (expected {class_root}/<class>/<image>)")
        for d in (d for sd in split_dirs.values() for d in _visible_dirs(sd)):
            if d.name not in classes:
                raise DataError(f"{d}: class {d.name!r} is not among the train classes ({', '.join(classes)})")
        if split not in split_dirs:
            raise DataError(f"{root}: has {next(iter(split_dirs))}/ but no {split}/ folder")
        items = [(f, classes.index(d.name)) for d in _visible_dirs(split_dirs[split]) for f in _images(d)]
    else:
        dirs = _visible_dirs(root)
        if not dirs:
            raise DataError(f"{root}: no class folders (expected {root}/<class>/<image> or {root}/train/<class>/...)")
        classes = tuple(d.name for d in dirs)
        items = [
            (f, label)
            for label, d in enumerate(dirs)
            for f in _images(d)
            if _in_test(d.name, f.name) == (split == "test")
        ]
    if not items:
        raise DataError(f"{root}: the {split} split holds no images")
    return classes, items


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.fit(img.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None


def load_folder(root: str | Path, split: str, *, image_size: int = DEFAULT_IMAGE_SIZE) -> ImageArrays:
    """Decode one split of an image-folder tree (layouts and split rule in the module docstring).

    Raises:
        DataError: see :func:`folder_layout`; an unreadable image names the file.
    """
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    classes, items = folder_layout(root, split)
    images = np.empty((len(items), image_size, image_size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(progress(items, desc=f"decoding {split} images")):
        images[i] = _decode(path, image_size)
    labels = np.array([label for _, label in items], dtype=np.int64)
    return ImageArrays(images, labels, classes, "folder", split, str(root))
