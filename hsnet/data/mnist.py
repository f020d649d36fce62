"""MNIST and Fashion-MNIST from their four IDX files, with Fashion-MNIST found where Debian installs it.

Checksums. Debian's ``dataset-fashion-mnist`` (0.0~git20200523.55506a9-1) installs the four ``.gz`` files of
Zalando's repository, but not byte for byte: each Debian file is shorter than Zalando's by exactly the length of
the gzip header's file-name field (24 bytes for ``train-*``, 23 for ``t10k-*``; Zalando's sizes are 26421880,
29515, 4422102 and 5148 bytes), so their md5s differ from the ones Zalando publishes. The data inside is what
matters, so Fashion-MNIST is verified by the sha256 of the *uncompressed* IDX bytes (measured on the Debian files),
which accepts Zalando's ``.gz``, Debian's and uncompressed copies alike. For MNIST only the md5s of the distributed
``.gz`` files are known (torchvision lists them); uncompressed MNIST files are read unverified.
"""

from __future__ import annotations

from pathlib import Path

from hsnet.data.base import DataError, ImageArrays, check_split, default_data_dir, verify_digest
from hsnet.data.idx import read_idx_images, read_idx_labels

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "IDX_FILES",
    "find_idx_dir",
    "load_idx_dataset",
]

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
# split -> (images, labels) file names, without ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SIZES = {"train": 60000, "test": 10000}
# sha256 of the uncompressed IDX files, measured on Debian's dataset-fashion-mnist.
_FASHION_CONTENT_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# md5 of the distributed .gz files: Zalando's README (Fashion-MNIST) and torchvision's mnist.py (MNIST).
GZ_MD5 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}
# sha256 of Debian's .gz files (measured), so that a download check can accept them too.
DEBIAN_FASHION_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_CLASSES = {"fashion-mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}
# Folder names other tools use, looked for inside a data dir (ours first, then torchvision's layout).
_SUBDIRS = {"fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"), "mnist": ("mnist", "MNIST/raw")}


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _candidates(name: str, data_dir: str | Path | None) -> list[Path]:
    if data_dir is not None:
        root = Path(data_dir)
        return [root, *(root / s for s in _SUBDIRS[name])]
    dirs = [default_data_dir() / _SUBDIRS[name][0]]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST_DIR)
    return dirs


def find_idx_dir(name: str, split: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding ``split`` of MNIST or Fashion-MNIST (``.gz`` or uncompressed files).

    Looked for in ``data_dir``, ``data_dir/<name>`` and torchvision's ``data_dir/FashionMNIST/raw``; without a
    data dir, in the download cache and (Fashion-MNIST) Debian's ``/usr/share/datasets/fashion-mnist``.

    Raises:
        DataError: nothing found; the message lists where it looked and how to get the files.
    """
    check_split(split)
    looked = _candidates(name, data_dir)
    for folder in looked:
        if all(_idx_file(folder, stem) for stem in IDX_FILES[split]):
            return folder
    where = ", ".join(str(p) for p in looked)
    files = " and ".join(f"{s}.gz" for s in IDX_FILES[split])
    hint = (
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass a data dir holding "
        f"{files}, or use --download"
        if name == "fashion-mnist"
        else f"pass a data dir holding {files}, or use --download"
    )
    raise DataError(f"{name} {split} split not found (looked in {where}); {hint}")


def _verify_gz(name: str, path: Path) -> None:
    known = GZ_MD5[name].get(path.name)
    if known is not None:
        extra = [f"sha256:{DEBIAN_FASHION_GZ_SHA256[path.name]}"] if name == "fashion-mnist" else []
        verify_digest(path, [f"md5:{known}", *extra])


def load_idx_dataset(name: str, split: str, folder: str | Path, *, verify: bool = True) -> ImageArrays:
    """Load one split of ``"mnist"`` or ``"fashion-mnist"`` from the IDX files in ``folder``.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"`` (class names and checksums).
        split: ``"train"`` or ``"test"``.
        folder: where the files are (see :func:`find_idx_dir`).
        verify: check known checksums and the official image counts (60000/10000); False for your own files in
            this format, which are still fully validated (header, sizes, label range).

    Raises:
        DataError: a missing or malformed file, a checksum mismatch, or images and labels that disagree.
    """
    check_split(split)
    if name not in _CLASSES:
        raise DataError(f"unknown IDX dataset {name!r}; valid: {', '.join(_CLASSES)}")
    folder = Path(folder)
    classes = _CLASSES[name]
    paths = []
    for stem in IDX_FILES[split]:
        path = _idx_file(folder, stem)
        if path is None:
            raise DataError(f"{folder / (stem + '.gz')}: file not found (neither .gz nor uncompressed)")
        paths.append(path)
    images_path, labels_path = paths
    images_sha = labels_sha = None
    if verify and name == "fashion-mnist":
        images_sha, labels_sha = ([_FASHION_CONTENT_SHA256[s]] for s in IDX_FILES[split])
    elif verify:
        for path in paths:
            _verify_gz(name, path)
    images = read_idx_images(images_path, content_sha256=images_sha)
    labels = read_idx_labels(labels_path, len(classes), content_sha256=labels_sha)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if verify and images.shape[0] != _SIZES[split]:
        raise DataError(f"{images_path}: {images.shape[0]} images, the {name} {split} split has {_SIZES[split]}")
    return ImageArrays(images, labels, classes, name, split, str(folder))
