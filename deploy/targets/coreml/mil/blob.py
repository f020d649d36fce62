"""Reader of the MIL blob storage file (``weights/weight.bin``) that holds an ML Program's large constants.

Layout (coremltools ``mlmodel/src/MILBlob/Blob/StorageFormat.hpp``, little-endian, every entry 64-byte aligned):
a 64-byte header (``uint32 count``, ``uint32 version = 2``, reserved), then per constant a 64-byte metadata
record (``uint32 sentinel = 0xDEADBEEF``, ``uint32 dtype``, ``uint64 size_in_bytes``, ``uint64 data_offset``,
reserved) followed by the raw data. The program refers to a constant by the file offset of its metadata record.

Written from the format description rather than through ``coremltools.libmilstoragepython`` so that every
bound is checked (a truncated file is a :class:`DeployError`, never a crash) and nothing but numpy is needed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from deploy.errors import DeployError

__all__ = ["BLOB_DTYPES", "BlobFile"]

_HEADER = struct.Struct("<II")
_METADATA = struct.Struct("<IIQQ")
_SENTINEL = 0xDEADBEEF
_HEADER_SIZE = 64

#: Blob dtype codes (``BlobDataType``) this reader decodes. Sub-byte and fp8 codes (8-13, 16, 17) only occur
#: in palettized or quantized programs, which hsnet does not produce.
BLOB_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f2"),
    2: np.dtype("<f4"),
    3: np.dtype("u1"),
    4: np.dtype("i1"),
    6: np.dtype("<i2"),
    7: np.dtype("<u2"),
    14: np.dtype("<i4"),
    15: np.dtype("<u4"),
}


class BlobFile:
    """One weight file, memory-mapped; :meth:`read` returns the constant stored at a metadata offset.

    Args:
        path: the ``weight.bin`` file.

    Raises:
        DeployError: the file is missing, shorter than its header, or not a version-2 blob file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise DeployError(f"{self.path}: cannot read the weight file ({e})") from None
        if self._data.size < _HEADER_SIZE:
            raise DeployError(f"{self.path}: truncated weight file ({self._data.size} bytes, no header)")
        self.count, self.version = _HEADER.unpack_from(self._data, 0)
        if self.version != 2:
            raise DeployError(f"{self.path}: unsupported weight file version {self.version} (expected 2)")

    def read(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The constant whose metadata record starts at ``offset``, as ``dtype`` with ``shape`` (a copy).

        Raises:
            DeployError: the record is out of bounds, has a bad sentinel, another dtype than the program
                declares, or a size that does not match ``shape``.
        """
        size = self._data.size
        if offset < _HEADER_SIZE or offset + _METADATA.size > size:
            raise DeployError(f"{self.path}: weight record at offset {offset} is outside the file ({size} bytes)")
        sentinel, code, nbytes, data_offset = _METADATA.unpack_from(self._data, offset)
        if sentinel != _SENTINEL:
            raise DeployError(f"{self.path}: corrupt weight record at offset {offset} (bad sentinel)")
        stored = BLOB_DTYPES.get(code)
        if stored is None:
            raise DeployError(f"{self.path}: weight record at offset {offset} has unsupported blob dtype {code}")
        if stored != np.dtype(dtype).newbyteorder("<"):
            raise DeployError(
                f"{self.path}: weight record at offset {offset} holds {stored.name}, the program declares "
                f"{np.dtype(dtype).name}"
            )
        expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
        if nbytes != expected:
            raise DeployError(
                f"{self.path}: weight record at offset {offset} has {nbytes} bytes, shape {shape} needs {expected}"
            )
        if data_offset + nbytes > size:
            raise DeployError(
                f"{self.path}: truncated weight file (record at offset {offset} ends at byte "
                f"{data_offset + nbytes}, the file has {size})"
            )
        raw = self._data[data_offset : data_offset + nbytes]
        return np.array(raw.view(stored), dtype=stored.newbyteorder("="), copy=True).reshape(shape)
