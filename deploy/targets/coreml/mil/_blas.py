"""Set the thread count of numpy's OpenBLAS for a block of code (what ``threadpoolctl`` does, for one library).

The evaluator spends its time in ``np.matmul``. On a shared 2-core machine OpenBLAS's default pool (one thread
per core, spinning while it waits) made HSNet at 224x224 six times slower than one thread (1.17 s against
0.19 s per image), so the artifact honours its ``threads`` setting through this. Without OpenBLAS (numpy built
on Accelerate or MKL) nothing is changed and :func:`blas_threads` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from functools import cache
from pathlib import Path

__all__ = ["blas_threads", "can_set_blas_threads"]

# Symbol suffixes of the OpenBLAS builds numpy ships (scipy-openblas, 64-bit interface) or links (distributions).
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


@cache
def _openblas() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy uses, or None."""
    import numpy as np  # noqa: F401  (numpy's BLAS must be loaded to be found)

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:  # not Linux
        return None
    # numpy's own copy first: torch may load another BLAS, which must be left alone.
    paths.sort(key=lambda p: "numpy" not in p)
    for path in paths:
        if "torch" in Path(path).parts:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None


def can_set_blas_threads() -> bool:
    """Whether numpy's BLAS is an OpenBLAS whose thread count :func:`blas_threads` can set."""
    return _openblas() is not None


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[bool]:
    """Run the block with numpy's OpenBLAS limited to ``threads`` threads (``None``: leave it alone).

    Yields:
        True if the thread count is under control for the block (or ``threads`` is None), False if numpy's BLAS
        could not be found (the block then runs with the BLAS default).
    """
    api = _openblas() if threads is not None else None
    if threads is None or api is None:
        yield threads is None
        return
    setter, getter = api
    before = getter()
    setter(int(threads))
    try:
        yield True
    finally:
        setter(before)
