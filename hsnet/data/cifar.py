"""CIFAR-10 and CIFAR-100 from the python-pickle folders exactly as distributed, read without trusting pickle.

The folders ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) and
``cifar-100-python/`` (``train``, ``test``, ``meta``) hold Python 2 cPickle files: a dict with byte-string keys
whose ``b"data"`` is a numpy uint8 array (N, 3072), channel-planar (1024 red, 1024 green, 1024 blue, each
row-major), and whose labels are a list of ints. A pickle can run any code when loaded, so these are read with
:class:`SafeUnpickler`, which resolves exactly the three globals a numpy array needs and refuses every other one.
Known files are also checked against their published md5 before they are unpickled at all.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hsnet.data.base import DataError, ImageArrays, check_split, default_data_dir, verify_digest

__all__ = [
    "CIFAR_LAYOUT",
    "SafeUnpickler",
    "UnsafePickleError",
    "find_cifar_dir",
    "load_cifar",
    "safe_unpickle",
    "write_cifar_folder",
]


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# (module, name) as written in the pickle -> the object it may resolve to. Files written by numpy 1.x name
# numpy.core.multiarray, by numpy 2.x numpy._core.multiarray; both mean the same function.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global (or persistent id) that :class:`SafeUnpickler` does not allow."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain data (dicts, lists, tuples, strings, bytes, numbers) and numpy arrays, nothing else.

    ``find_class`` is the only way a pickle reaches code; it returns ``numpy.ndarray``, ``numpy.dtype`` and numpy's
    ``_reconstruct`` and raises for any other global (``os.system``, ``builtins.eval``, ``_codecs.encode``, ...),
    so a malicious file stops with an error before its payload is called. Persistent ids are refused too.
    """

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(f"refusing to load global {module}.{name} (only numpy arrays are allowed)")
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id")


def safe_unpickle(path: Path) -> Any:
    """Load a pickle file with :class:`SafeUnpickler`, Python 2 strings as bytes (as the CIFAR files need).

    Raises:
        DataError: the file is missing, truncated, not a pickle, or names a forbidden global (message names the file).
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as e:
        raise DataError(f"{path}: not a safe CIFAR pickle: {e}") from None
    except EOFError:
        raise DataError(f"{path}: truncated pickle (ends before its STOP opcode)") from None
    except Exception as e:  # noqa: BLE001 - a crafted pickle can raise anything from inside numpy or pickle
        raise DataError(f"{path}: malformed or truncated pickle ({type(e).__name__}: {e})") from None


# name -> folder, label key, class-name file and key, number of classes, files per split, and the published md5 of
# every file (torchvision's cifar.py; the tarball md5s are on the CIFAR page and in hsnet.data.download).
CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "label_key": b"labels",
        "meta": ("batches.meta", b"label_names"),
        "num_classes": 10,
        "splits": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "md5": {
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "label_key": b"fine_labels",
        "meta": ("meta", b"fine_label_names"),
        "num_classes": 100,
        "splits": {"train": ["train"], "test": ["test"]},
        "md5": {
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    },
}
_SIZES = {"train": 50000, "test": 10000}


def _layout(name: str) -> dict[str, Any]:
    if name not in CIFAR_LAYOUT:
        raise DataError(f"unknown CIFAR dataset {name!r}; valid: {', '.join(CIFAR_LAYOUT)}")
    return CIFAR_LAYOUT[name]


def find_cifar_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The ``cifar-10-batches-py`` / ``cifar-100-python`` folder: ``data_dir`` itself, inside it, or in the cache.

    Raises:
        DataError: not found; says where it looked and how to get it.
    """
    layout = _layout(name)
    meta = layout["meta"][0]
    roots = [Path(data_dir)] if data_dir is not None else [default_data_dir()]
    looked = [p for r in roots for p in (r, r / layout["folder"])]
    for folder in looked:
        if (folder / meta).is_file():
            return folder
    raise DataError(
        f"{name} not found (no {layout['folder']}/{meta} in {', '.join(map(str, roots))}); pass --data-dir with the "
        f"extracted {layout['folder']} folder, or add --download"
    )


def _as_dict(obj: Any, path: Path, keys: tuple[bytes, ...]) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    missing = [k.decode() for k in keys if k not in obj]
    if missing:
        found = ", ".join(repr(k) for k in obj)
        raise DataError(f"{path}: missing key {', '.join(missing)} (found {found})")
    return obj


def _class_names(path: Path, key: bytes, num_classes: int) -> tuple[str, ...]:
    meta = _as_dict(safe_unpickle(path), path, (key,))
    names = meta[key]
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: {key.decode()} must be a list of strings")
    if len(names) != num_classes:
        raise DataError(f"{path}: {len(names)} class names in {key.decode()}, expected {num_classes}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _as_dict(safe_unpickle(path), path, (b"data", label_key))
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: data must be a uint8 array (N, 3072) (32x32 RGB, channel-planar), got {got}")
    raw = batch[label_key]
    try:
        labels = np.asarray(raw, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: {label_key.decode()} must be a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: {data.shape[0]} images but {label_key.decode()} has shape {labels.shape} "
            f"(expected ({data.shape[0]},))"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(
            f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of range 0..{num_classes - 1} "
            f"({bad.size} bad labels)"
        )
    # channel-planar rows -> NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar(name: str, split: str, folder: str | Path, *, verify: bool = True) -> ImageArrays:
    """Load one split of ``"cifar10"`` or ``"cifar100"`` from its extracted python folder.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` or ``"test"``.
        folder: the ``cifar-10-batches-py`` / ``cifar-100-python`` folder.
        verify: check every file's published md5 before unpickling it, and the official image counts
            (50000/10000). ``False`` for your own files in this format: they are still unpickled safely and
            validated (keys, dtype, shape, label range, class count).

    Raises:
        DataError: a missing, truncated, malformed or unsafe file, or a checksum mismatch; the message names it.
    """
    layout = _layout(name)
    check_split(split)
    folder = Path(folder)
    meta_name, meta_key = layout["meta"]
    files = [folder / meta_name, *(folder / f for f in layout["splits"][split])]
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: file not found ({name} {split} needs {', '.join(p.name for p in files)})")
    if verify:
        for path in files:
            verify_digest(path, [f"md5:{layout['md5'][path.name]}"], what=f"the official {name} file")
    classes = _class_names(files[0], meta_key, layout["num_classes"])
    parts = [_batch(path, layout["label_key"], layout["num_classes"]) for path in files[1:]]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    if verify and images.shape[0] != _SIZES[split]:
        raise DataError(f"{folder}: {images.shape[0]} {split} images, {name} has {_SIZES[split]}")
    return ImageArrays(images, labels, classes, name, split, str(folder))


class _Py2Pickler:
    """Writes dicts of byte strings, ints, lists and uint8 arrays as Python 2's cPickle does with protocol 2.

    This is the on-disk format of the distributed CIFAR files (Python 2 ``str`` as SHORT_BINSTRING/BINSTRING,
    arrays through ``numpy.core.multiarray._reconstruct``), which Python 3's pickler cannot produce: it writes
    bytes through ``_codecs.encode`` instead.
    """

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo = 0

    def _put(self) -> None:
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + self.memo.to_bytes(4, "little")
        self.memo += 1

    def _global(self, module: str, name: str) -> None:
        self.out += b"c" + f"{module}\n{name}\n".encode()
        self._put()

    def _str(self, s: bytes) -> None:
        self.out += (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + len(s).to_bytes(4, "little")) + s
        self._put()

    def _int(self, v: int) -> None:
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + v.to_bytes(2, "little")
        else:
            self.out += b"J" + v.to_bytes(4, "little", signed=True)

    def _array(self, a: np.ndarray) -> None:
        self._global("numpy.core.multiarray", "_reconstruct")
        self._global("numpy", "ndarray")
        self.out += b"K\x00\x85"  # (0,)
        self._put()
        self._str(b"b")
        self.out += b"\x87"  # TUPLE3
        self._put()
        self.out += b"R"  # REDUCE
        self._put()
        self.out += b"(K\x01"  # MARK, version 1
        for d in a.shape:
            self._int(d)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[a.ndim]
        self._put()
        self._global("numpy", "dtype")
        self._str(b"u1")
        self.out += b"K\x00K\x01\x87"  # ("u1", 0, 1)
        self._put()
        self.out += b"R"
        self._put()
        self.out += b"(K\x03"
        self._str(b"|")
        self.out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # (3, "|", None, None, None, -1, -1, 0)
        self._put()
        self.out += b"b\x89"  # BUILD dtype; NEWFALSE (not Fortran order)
        self._str(np.ascontiguousarray(a, dtype=np.uint8).tobytes())
        self.out += b"t"  # TUPLE (state)
        self._put()
        self.out += b"b"  # BUILD array

    def _value(self, v: Any) -> None:
        if isinstance(v, bytes):
            self._str(v)
        elif isinstance(v, int):
            self._int(v)
        elif isinstance(v, np.ndarray):
            self._array(v)
        elif isinstance(v, list):
            self.out += b"]"
            self._put()
            for i in range(0, len(v), 1000):  # cPickle batches APPENDS by 1000
                self.out += b"("
                for item in v[i : i + 1000]:
                    self._value(item)
                self.out += b"e"
        elif isinstance(v, dict):
            self.out += b"}"
            self._put()
            self.out += b"("
            for k, item in v.items():
                self._value(k)
                self._value(item)
            self.out += b"u"
        else:
            raise TypeError(f"cannot write {type(v).__name__} in the CIFAR pickle format")

    def dumps(self, obj: dict) -> bytes:
        self._value(obj)
        return bytes(self.out + b".")


def write_cifar_folder(
    root: str | Path,
    name: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: tuple[str, ...] | None = None,
    *,
    batches: int = 5,
) -> Path:
    """Write images in the distributed CIFAR python layout (for your own data in this format, and for tests).

    Args:
        root: folder that receives ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        name: ``"cifar10"`` or ``"cifar100"``.
        splits: ``{"train": (images, labels), "test": (...)}``; images uint8 (N, 32, 32, 3), labels ints.
        classes: class names (default ``class0``, ``class1``, ...).
        batches: CIFAR-10 only: number of ``data_batch_*`` files the train split is cut into (the official 5).

    Returns:
        the dataset folder.
    """
    from hsnet.toolbox.atomic import atomic_path

    layout = _layout(name)
    folder = Path(root) / layout["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    classes = classes or tuple(f"class{i}" for i in range(layout["num_classes"]))
    meta_name, meta_key = layout["meta"]
    if name == "cifar10":
        meta = {b"num_cases_per_batch": 10000, meta_key: [c.encode() for c in classes], b"num_vis": 3072}
    else:
        meta = {meta_key: [c.encode() for c in classes], b"coarse_label_names": [b"coarse"]}
    files = {meta_name: meta}
    for split, (images, labels) in splits.items():
        names = layout["splits"][split][:batches] if split == "train" and name == "cifar10" else layout["splits"][split]
        for i, part in enumerate(np.array_split(np.arange(len(labels)), len(names))):
            rows = np.ascontiguousarray(images[part].transpose(0, 3, 1, 2)).reshape(len(part), 3072)
            labs = [int(v) for v in np.asarray(labels)[part]]
            batch = {b"batch_label": f"{split} batch {i + 1}".encode(), b"data": rows}
            if name == "cifar10":
                batch[b"labels"] = labs
            else:
                batch[b"fine_labels"] = labs
                batch[b"coarse_labels"] = [0] * len(labs)
            batch[b"filenames"] = [f"img_{i}_{j}.png".encode() for j in range(len(part))]
            files[names[i]] = batch
    for fname, obj in files.items():
        with atomic_path(folder / fname) as tmp:
            tmp.write_bytes(_Py2Pickler().dumps(obj))
    return folder
