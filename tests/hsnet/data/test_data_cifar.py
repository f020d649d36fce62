"""CIFAR-10/100 python folders: exact on-disk format round trip, validation, checksums, refusal of unsafe pickles."""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
import warnings
from pathlib import Path

import numpy as np
import pytest

from hsnet.data import DataError, load_arrays
from hsnet.data.cifar import CIFAR_LAYOUT, load_cifar, safe_unpickle, write_cifar_folder


def _data(n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, num_classes, n)


@pytest.fixture
def cifar10(tmp_path) -> tuple[Path, dict]:
    splits = {"train": _data(10, 10, 1), "test": _data(4, 10, 2)}
    return write_cifar_folder(tmp_path, "cifar10", splits, ("airplane", *(f"c{i}" for i in range(1, 10)))), splits


def test_written_files_are_the_distributed_format(cifar10):
    folder, splits = cifar10
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
    ]  # fmt: skip
    raw = (folder / "data_batch_1").read_bytes()
    ops = {op.name: arg for op, arg, _ in pickletools.genops(raw)}
    # Python 2 cPickle, protocol 2: byte strings as SHORT_BINSTRING/BINSTRING, the array through numpy.core.
    assert raw[:2] == b"\x80\x02" and "SHORT_BINSTRING" in ops and "BINSTRING" in ops
    assert {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype",
    }  # fmt: skip
    # What CIFAR's own instructions do (pickle.load(encoding="bytes")) on our trusted file gives the documented dict.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is an alias in numpy 2
        batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"data", b"labels", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (2, 3072)
    # channel-planar: the first 1024 values are the red channel of image 0, row-major
    assert np.array_equal(batch[b"data"][0, :1024].reshape(32, 32), splits["train"][0][0, :, :, 0])
    assert safe_unpickle(folder / "batches.meta")[b"label_names"][0] == b"airplane"


def test_cifar10_round_trip(cifar10):
    folder, splits = cifar10
    for split, (images, labels) in splits.items():
        arrays = load_arrays("cifar10", split, data_dir=folder.parent, verify=False)
        assert arrays.images.shape == (len(labels), 32, 32, 3) and arrays.images.flags.c_contiguous
        assert np.array_equal(arrays.images, images) and arrays.labels.tolist() == labels.tolist()
        assert arrays.classes[0] == "airplane" and len(arrays.classes) == 10 and arrays.source == str(folder)


def test_cifar100_round_trip(tmp_path):
    images, labels = _data(6, 100)
    folder = write_cifar_folder(tmp_path, "cifar100", {"train": (images, labels), "test": _data(3, 100)})
    assert sorted(p.name for p in folder.iterdir()) == ["meta", "test", "train"]
    arrays = load_arrays("cifar100", "train", data_dir=folder, verify=False)  # the folder itself works too
    assert np.array_equal(arrays.images, images) and arrays.labels.tolist() == labels.tolist()
    assert len(arrays.classes) == 100
    batch = safe_unpickle(folder / "train")
    assert {b"fine_labels", b"coarse_labels", b"data", b"filenames", b"batch_label"} == set(batch)


def test_official_checksums_are_enforced(cifar10):
    folder, _ = cifar10
    message = (
        r"batches.meta: checksum mismatch for the official cifar10 file: expected "
        r"md5:5ff9c542aee3614f3951f8cda6e48888, got md5:[0-9a-f]{32}.*--no-verify"
    )
    with pytest.raises(DataError, match=message):
        load_arrays("cifar10", "train", data_dir=folder.parent)


def test_checksums_pass_when_they_match(cifar10, monkeypatch):
    # The md5 table is data: with the md5s of these files in it, verify=True loads them (and checks the count).
    folder, _ = cifar10
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setitem(CIFAR_LAYOUT["cifar10"], "md5", md5)
    with pytest.raises(DataError, match=r"10 train images, cifar10 has 50000"):
        load_cifar("cifar10", "train", folder)


def _rewrite(folder: Path, name: str, changes: dict) -> None:
    batch = safe_unpickle(folder / name)
    batch.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del batch[key]
    from hsnet.data.cifar import _Py2Pickler

    (folder / name).write_bytes(_Py2Pickler().dumps(batch))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({b"data": np.zeros((2, 1024), np.uint8)}, r"data_batch_2: data must be a uint8 array \(N, 3072\).*1024"),
        ({b"labels": [1, 10]}, r"data_batch_2: label 10 at index 1 is out of range 0..9"),
        ({b"labels": [1]}, r"data_batch_2: 2 images but labels has shape \(1,\)"),
        ({b"labels": None}, r"data_batch_2: missing key labels"),
    ],
)  # fmt: skip
def test_malformed_batches_name_the_file(cifar10, change, message):
    folder, _ = cifar10
    _rewrite(folder, "data_batch_2", change)
    with pytest.raises(DataError, match=message):
        load_arrays("cifar10", "train", data_dir=folder, verify=False)


def test_wrong_class_count_missing_and_truncated_files(cifar10):
    folder, _ = cifar10
    _rewrite(folder, "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(DataError, match=r"batches.meta: 2 class names in label_names, expected 10"):
        load_arrays("cifar10", "test", data_dir=folder, verify=False)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"data_batch_4: file not found"):
        load_arrays("cifar10", "train", data_dir=folder, verify=False)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    _rewrite(folder, "batches.meta", {b"label_names": [b"x"] * 10})
    with pytest.raises(DataError, match=r"test_batch: (truncated pickle|malformed or truncated pickle)"):
        load_arrays("cifar10", "test", data_dir=folder, verify=False)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"test_batch: "):
        load_arrays("cifar10", "test", data_dir=folder, verify=False)


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"cifar100 not found \(no cifar-100-python/meta in .*--download"):
        load_arrays("cifar100", "test", data_dir=tmp_path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=4)
    assert b"system" in evil  # a real os.system call, as plain pickle.load would make it
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(tmp_path, "cifar10", {"test": _data(2, 10)})
    (folder / "test_batch").write_bytes(evil)
    with pytest.raises(
        DataError, match=r"test_batch: not a safe CIFAR pickle: refusing to load global (posix|os)\.system"
    ):
        load_arrays("cifar10", "test", data_dir=tmp_path, verify=False)
    assert not marker.exists()
    # Other routes to code are closed too: builtins, and Python 3's _codecs.encode used for bytes by protocol 2.
    for obj in (eval, pickle.dumps(b"x", protocol=2)):
        raw = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
        (folder / "test_batch").write_bytes(raw)
        with pytest.raises(DataError, match=r"refusing to load global"):
            load_arrays("cifar10", "test", data_dir=tmp_path, verify=False)
