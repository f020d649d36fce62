"""IDX parsing: the real Fashion-MNIST files Debian installs, and every way an IDX file can be malformed."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from hsnet.data import DATASETS, DataError, load_arrays
from hsnet.data.idx import read_idx, read_idx_images, read_idx_labels
from hsnet.data.mnist import DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, find_idx_dir, load_idx_dataset

FASHION = DEBIAN_FASHION_MNIST_DIR
needs_fashion = pytest.mark.skipif(
    not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file(), reason="Debian's dataset-fashion-mnist is not installed"
)


def _idx(dtype_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">HBB", 0, dtype_code, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + payload


def _write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@needs_fashion
def test_fashion_mnist_train_is_found_verified_and_balanced():
    arrays = load_arrays("fashion-mnist", "train")
    assert arrays.images.shape == (60000, 28, 28, 1) and arrays.images.dtype == np.uint8
    assert arrays.labels.dtype == np.int64
    assert arrays.class_counts().tolist() == [6000] * 10
    assert arrays.classes == FASHION_MNIST_CLASSES == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    assert (arrays.name, arrays.split, arrays.source) == ("fashion-mnist", "train", str(FASHION))
    # Pixel statistics pin the decoding (byte order, header offset): these are the published figures.
    assert arrays.images.mean() / 255 == pytest.approx(0.2860406, abs=1e-6)
    assert arrays.images.min() == 0 and arrays.images.max() == 255


@needs_fashion
def test_fashion_mnist_test_split():
    arrays = load_arrays("fashion-mnist", "test")
    assert arrays.images.shape == (10000, 28, 28, 1)
    assert arrays.class_counts().tolist() == [1000] * 10
    assert arrays.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # first test labels, as published


@needs_fashion
def test_fashion_mnist_checksum_covers_content_in_any_compression(tmp_path):
    # An uncompressed copy and a re-gzipped copy of the same content verify; one changed label does not.
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(gzip.decompress((FASHION / f"{stem}.gz").read_bytes()))
    assert load_arrays("fashion-mnist", "test", data_dir=tmp_path).images.shape == (10000, 28, 28, 1)
    labels = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
    labels[8 + 123] = (labels[8 + 123] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    _write(tmp_path / "t10k-labels-idx1-ubyte.gz", bytes(labels), gz=True)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: checksum mismatch.*--no-verify"):
        load_arrays("fashion-mnist", "test", data_dir=tmp_path)
    arrays = load_arrays("fashion-mnist", "test", data_dir=tmp_path, verify=False)
    assert arrays.class_counts().sum() == 10000


@needs_fashion
def test_torchvision_layout_is_found(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(FASHION / stem, raw / stem)
    assert find_idx_dir("fashion-mnist", "test", tmp_path) == raw


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist"):
        load_arrays("fashion-mnist", "test", data_dir=tmp_path)


def test_unknown_names_list_valid_ones():
    with pytest.raises(DataError, match=r"valid datasets: fashion-mnist, mnist, cifar10, cifar100, folder"):
        load_arrays("imagenet", "train")
    with pytest.raises(DataError, match=r"valid splits: train, test"):
        load_arrays("fashion-mnist", "val")
    assert DATASETS == ("fashion-mnist", "mnist", "cifar10", "cifar100", "folder")


def test_own_mnist_format_files_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)  # non-square: H and W must not be swapped
    labels = np.array([0, 9, 3, 3, 1, 2, 8], dtype=np.uint8)
    _write(tmp_path / "t10k-images-idx3-ubyte.gz", _idx(0x08, images.shape, images.tobytes()), gz=True)
    _write(tmp_path / "t10k-labels-idx1-ubyte", _idx(0x08, labels.shape, labels.tobytes()))
    arrays = load_arrays("mnist", "test", data_dir=tmp_path, verify=False)
    assert np.array_equal(arrays.images[..., 0], images) and arrays.labels.tolist() == labels.tolist()
    assert arrays.classes == tuple("0123456789")
    # verify=True: the .gz of an official name must be the official file; uncompressed files (no published
    # checksum) must at least hold the official number of images.
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: checksum mismatch: expected md5:9fb629c4"):
        load_arrays("mnist", "test", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    _write(tmp_path / "t10k-images-idx3-ubyte", _idx(0x08, images.shape, images.tobytes()))
    with pytest.raises(DataError, match=r"7 images, the mnist test split has 10000"):
        load_arrays("mnist", "test", data_dir=tmp_path)


def test_read_idx_other_dtypes_are_big_endian(tmp_path):
    values = np.array([[1, -2], [300, 70000]], dtype=">i4")
    arr = read_idx(_write(tmp_path / "x.idx", _idx(0x0C, (2, 2), values.tobytes())))
    assert arr.dtype == np.int32 and arr.tolist() == [[1, -2], [300, 70000]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", r"shorter than its 4-byte magic"),
        (b"\x01\x02\x08\x01" + b"\x00" * 8, r"magic number 01020801 does not start with 0000"),
        (_idx(0x07, (2,), b"\x00\x00"), r"unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", r"declares 0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"truncated IDX header \(3 dimensions declared\)"),
        (_idx(0x08, (4, 2, 2), b"\x00" * 15), r"truncated IDX file: header declares shape \(4, 2, 2\) \(16 data "
                                               r"bytes\), found 15"),
        (_idx(0x08, (2,), b"\x00" * 3), r"has bytes after the 2 data bytes"),
    ],
)  # fmt: skip
def test_malformed_idx_names_file_and_problem(tmp_path, data, message):
    for gz in (False, True):
        path = _write(tmp_path / f"bad{'.gz' if gz else ''}", data, gz=gz)
        with pytest.raises(DataError, match=message) as err:
            read_idx(path)
        assert str(path) in str(err.value)


def test_corrupted_gzip_and_missing_file(tmp_path):
    data = bytearray(gzip.compress(_idx(0x08, (1000,), bytes(1000))))
    data[-6] ^= 0xFF  # break the CRC
    with pytest.raises(DataError, match=r"bad.gz: cannot read"):
        read_idx(_write(tmp_path / "bad.gz", bytes(data)))
    with pytest.raises(DataError, match=r"nothing.gz: file not found"):
        read_idx(tmp_path / "nothing.gz")


def test_images_and_labels_are_checked(tmp_path):
    with pytest.raises(DataError, match=r"expected uint8 images .* got int32 \(2, 2, 2\)"):
        read_idx_images(_write(tmp_path / "a", _idx(0x0C, (2, 2, 2), bytes(32))))
    with pytest.raises(DataError, match=r"label 10 at index 2 is out of range 0..9 \(1 bad labels\)"):
        read_idx_labels(_write(tmp_path / "b", _idx(0x08, (4,), bytes([1, 2, 10, 3]))), 10)
    with pytest.raises(DataError, match=r"expected a 1-D uint8 label file, got uint8 \(2, 2\)"):
        read_idx_labels(_write(tmp_path / "c", _idx(0x08, (2, 2), bytes(4))), 10)
    # images and labels that disagree in count
    _write(tmp_path / "train-images-idx3-ubyte", _idx(0x08, (3, 2, 2), bytes(12)))
    _write(tmp_path / "train-labels-idx1-ubyte", _idx(0x08, (2,), bytes(2)))
    with pytest.raises(DataError, match=r"3 images but train-labels-idx1-ubyte has 2 labels"):
        load_idx_dataset("mnist", "train", tmp_path, verify=False)
