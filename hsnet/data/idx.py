"""MNIST-format IDX files (gzipped or not), read with every field of the header validated.

IDX layout (LeCun's MNIST page): two zero bytes, a dtype code, the number of dimensions, one big-endian uint32 per
dimension, then the values in big-endian row-major order. Nothing past the declared size is decompressed, so a
gzip bomb or a header that lies about its sizes costs at most the declared size plus one byte.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hsnet.data.base import DataError

__all__ = ["IDX_DTYPES", "read_idx", "read_idx_images", "read_idx_labels"]

# dtype code -> big-endian numpy dtype, from the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_ELEMENTS = 1 << 34  # refuses absurd headers before allocating


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read exactly ``n`` bytes unless the stream ends first (gzip streams return short reads)."""
    chunks = []
    while n > 0:
        chunk = f.read(min(n, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_idx(path: str | Path, *, content_sha256: Collection[str] | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw, detected from its first bytes) into a native-endian numpy array.

    Args:
        path: the file.
        content_sha256: if given, the sha256 of the uncompressed IDX bytes must be one of these; checking the content
            rather than the ``.gz`` accepts every recompression of the same data (Debian's files are not
            byte-identical to Zalando's, see :mod:`hsnet.data.mnist`).

    Raises:
        DataError: the file is missing, not gzip-decodable, has a bad magic number or dtype code, holds fewer
            or more bytes than its header declares, or fails ``content_sha256``. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise DataError(f"{path}: not an IDX file (shorter than its 4-byte magic number)")
            zero, code, ndim = struct.unpack(">HBB", head)
            if zero != 0:
                raise DataError(f"{path}: not an IDX file (magic number {head.hex()} does not start with 0000)")
            if code not in IDX_DTYPES:
                valid = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
                raise DataError(f"{path}: unknown IDX dtype code 0x{code:02x}; valid codes: {valid}")
            if ndim == 0:
                raise DataError(f"{path}: IDX header declares 0 dimensions")
            dims_raw = _read_exact(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
            shape = struct.unpack(f">{ndim}I", dims_raw)
            count = int(np.prod(shape, dtype=np.int64))
            if count > _MAX_ELEMENTS:
                raise DataError(f"{path}: IDX header declares an implausible shape {shape}")
            dtype = IDX_DTYPES[code]
            size = count * dtype.itemsize
            payload = _read_exact(f, size)
            if len(payload) < size:
                raise DataError(
                    f"{path}: truncated IDX file: header declares shape {shape} ({size} data bytes), "
                    f"found {len(payload)}"
                )
            if f.read(1):
                raise DataError(f"{path}: IDX file has bytes after the {size} data bytes its header declares {shape}")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if content_sha256 is not None:
        got = hashlib.sha256(head + dims_raw + payload).hexdigest()
        if got not in content_sha256:
            raise DataError(
                f"{path}: checksum mismatch: uncompressed content sha256 {got}, expected {' or '.join(content_sha256)} "
                "(a corrupted or modified file; re-download it, or pass verify=False / --no-verify for your own files)"
            )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))  # a writable copy


def read_idx_images(path: str | Path, *, content_sha256: Collection[str] | None = None) -> np.ndarray:
    """Read an IDX image file: uint8, (N, H, W) or (N, H, W, C) with C in 1 or 3; returned as (N, H, W, C).

    Raises:
        DataError: wrong dtype or number of dimensions (message names the file and what was found).
    """
    arr = read_idx(path, content_sha256=content_sha256)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] not in (1, 3)):
        raise DataError(
            f"{path}: expected uint8 images of shape (N, H, W) or (N, H, W, 1|3), got {arr.dtype} {arr.shape}"
        )
    if min(arr.shape[1:3]) == 0:
        raise DataError(f"{path}: images of size {arr.shape[1]}x{arr.shape[2]}")
    return arr if arr.ndim == 4 else arr[..., None]


def read_idx_labels(path: str | Path, num_classes: int, *, content_sha256: Collection[str] | None = None) -> np.ndarray:
    """Read an IDX label file: unsigned bytes, 1-D, every value below ``num_classes``; returned as int64.

    Raises:
        DataError: wrong dtype or shape, or a label out of range (the message gives the first bad index).
    """
    arr = read_idx(path, content_sha256=content_sha256)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise DataError(f"{path}: expected a 1-D uint8 label file, got {arr.dtype} {arr.shape}")
    bad = np.flatnonzero(arr >= num_classes)
    if bad.size:
        raise DataError(
            f"{path}: label {int(arr[bad[0]])} at index {int(bad[0])} is out of range 0..{num_classes - 1} "
            f"({bad.size} bad labels)"
        )
    return arr.astype(np.int64)
