"""numpy implementations of MIL operations, one function per operation type, looked up by :data:`OPS`.

Each function takes the operation's inputs by MIL parameter name (numpy arrays; a variadic input such as
``concat``'s ``values`` is a list; strings are ``str``) and returns one array or a tuple of arrays. Arithmetic is
done in float32 whatever the input precision; the evaluator then casts every result to the dtype the program
declares for it, so a float16 program is emulated as "fp16 storage between operations, fp32 inside each
operation" (:mod:`deploy.targets.coreml.mil.program`). Semantics follow the MIL operation reference
(``coremltools.converters.mil.mil.ops.defs``); where it is silent (the divisor of an average pool over a
``ceil_mode`` overhang) they follow PyTorch, the source of every hsnet program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["OPS", "op", "supported_ops"]

OpFunction = Callable[..., Any]
OPS: dict[str, OpFunction] = {}

_DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def op(*names: str) -> Callable[[OpFunction], OpFunction]:
    """Register a function as the implementation of the MIL operation types ``names``."""

    def register(fn: OpFunction) -> OpFunction:
        for name in names:
            if name in OPS:
                raise RuntimeError(f"MIL operation {name!r} implemented twice")
            OPS[name] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    """Sorted MIL operation types the evaluator implements (``const`` is handled by the program loader)."""
    return sorted({"const", *OPS})


def _f(x: Any) -> np.ndarray:
    """float32 working copy of a float input (float16 is widened; integers and bools are left alone)."""
    a = np.asarray(x)
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float32 else a


def _ints(x: Any) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _axis(axis: Any, rank: int) -> int:
    a = int(axis)
    return a + rank if a < 0 else a


# ---- element-wise -------------------------------------------------------------------------------------------


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFunction:
    def impl(x: Any, y: Any) -> np.ndarray:
        return fn(_f(x), _f(y))

    return impl


for _name, _fn in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "pow": np.power,
}.items():
    op(_name)(_binary(_fn))


@op("floor_div")
def _floor_div(x: Any, y: Any) -> np.ndarray:
    return np.floor_divide(_f(x), _f(y))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> OpFunction:
    def impl(x: Any) -> np.ndarray:
        return fn(_f(x))

    return impl


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


for _name, _fn in {
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "relu6": lambda x: np.clip(x, 0, 6).astype(x.dtype),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "floor": np.floor,
    "ceil": np.ceil,
    "square": np.square,
    "identity": lambda x: x,
}.items():
    op(_name)(_unary(_fn))


@op("rsqrt")
def _rsqrt(x: Any, epsilon: Any = 1e-12) -> np.ndarray:
    x = _f(x)
    return (1.0 / np.sqrt(x + np.float32(epsilon))).astype(x.dtype)


@op("clip")
def _clip(x: Any, alpha: Any, beta: Any) -> np.ndarray:
    x = _f(x)
    return np.minimum(np.maximum(x, _f(alpha)), _f(beta)).astype(x.dtype)


@op("sigmoid_hard")
def _sigmoid_hard(x: Any, alpha: Any = 0.2, beta: Any = 0.5) -> np.ndarray:
    x = _f(x)
    return np.minimum(np.maximum(_f(alpha) * x + _f(beta), 0), 1).astype(x.dtype)


@op("thresholded_relu")
def _thresholded_relu(x: Any, alpha: Any = 1.0) -> np.ndarray:
    x = _f(x)
    return np.where(x > _f(alpha), x, 0).astype(x.dtype)


@op("leaky_relu")
def _leaky_relu(x: Any, alpha: Any = 0.01) -> np.ndarray:
    x = _f(x)
    return np.where(x >= 0, x, _f(alpha) * x).astype(x.dtype)


@op("softplus")
def _softplus(x: Any) -> np.ndarray:
    x = _f(x)
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


@op("softmax")
def _softmax(x: Any, axis: Any = -1) -> np.ndarray:
    x = _f(x)
    a = _axis(axis, x.ndim)
    e = np.exp(x - np.max(x, axis=a, keepdims=True))
    return e / np.sum(e, axis=a, keepdims=True)


@op("cast")
def _cast(x: Any, dtype: str) -> np.ndarray:
    if dtype not in _DTYPES:
        raise ValueError(f"cast to unknown dtype {dtype!r}")
    return np.asarray(x).astype(_DTYPES[dtype])


# ---- linear algebra -------------------------------------------------------------------------------------------


@op("linear")
def _linear(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    y = _f(x) @ _f(weight).T
    return y if bias is None else y + _f(bias)


@op("matmul")
def _matmul(x: Any, y: Any, transpose_x: Any = False, transpose_y: Any = False) -> np.ndarray:
    x, y = _f(x), _f(y)
    # MIL promotes rank-1 operands like numpy does; transposition only applies to rank >= 2.
    if bool(transpose_x) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if bool(transpose_y) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# ---- convolution and pooling -------------------------------------------------------------------------------


def _pads(
    pad_type: str,
    pad: Any,
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (begin, end) padding per spatial axis for MIL's pad types."""
    n = len(in_sizes)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = _ints(pad)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s in zip(in_sizes, eff, strides, strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            small, large = total // 2, total - total // 2
            out.append((small, large) if pad_type == "same" else (large, small))
        return out
    raise ValueError(f"unknown pad_type {pad_type!r}")


def _spatial_args(x: np.ndarray, kernel: Sequence[int], strides: Any, dilations: Any) -> tuple[list[int], list[int]]:
    n = x.ndim - 2
    s = _ints(strides) if strides is not None else [1] * n
    d = _ints(dilations) if dilations is not None else [1] * n
    if len(kernel) != n or len(s) != n or len(d) != n:
        raise ValueError(f"kernel {list(kernel)}, strides {s}, dilations {d} do not fit a rank-{x.ndim} input")
    return s, d


def _windows(xp: np.ndarray, eff: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> np.ndarray:
    """View (N, C, *out, *kernel) of the strided, dilated windows of the padded input ``xp``."""
    n = len(eff)
    axes = tuple(range(2, 2 + n))
    w = sliding_window_view(xp, tuple(eff), axis=axes)
    index = (
        slice(None),
        slice(None),
        *(slice(None, None, s) for s in strides),
        *(slice(None, None, d) for d in dilations),
    )
    return w[index]


@op("conv")
def _conv(
    x: Any,
    weight: Any,
    bias: Any = None,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    dilations: Any = None,
    groups: Any = 1,
) -> np.ndarray:
    x, w = _f(x), _f(weight)
    kernel = w.shape[2:]
    strides, dilations = _spatial_args(x, kernel, strides, dilations)
    groups = int(groups)
    n, c_in = x.shape[:2]
    c_out, c_group = w.shape[:2]
    if c_in != c_group * groups or c_out % groups:
        raise ValueError(f"conv weight {w.shape} with groups={groups} does not fit {c_in} input channels")
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, dilations)
    xp = np.pad(x, [(0, 0), (0, 0), *pads]) if any(p != (0, 0) for p in pads) else x
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    out_sizes = [(xp.shape[2 + i] - eff[i]) // strides[i] + 1 for i in range(len(kernel))]
    m = c_out // groups
    if c_group == 1 and groups > 1:
        y = _depthwise(xp, w, m, out_sizes, strides, dilations)
    elif all(k == 1 for k in kernel):
        index = (slice(None), slice(None), *(slice(None, o * s, s) for o, s in zip(out_sizes, strides, strict=True)))
        cols = xp[index].reshape(n, groups, c_group, -1)  # (N, G, Cg, P)
        y = np.matmul(w.reshape(groups, m, c_group), cols).reshape(n, c_out, *out_sizes)
    else:
        # im2col as one strided slice per kernel tap, stacked after the channel axis: (N, C, K, P) reshapes to
        # (N, G, Cg*K, P) without a transpose, and one batched matmul per group does the rest.
        cols = np.stack([xp[_tap_index(tap, dilations, out_sizes, strides)] for tap in np.ndindex(*kernel)], axis=2)
        cols = cols.reshape(n, groups, c_group * int(np.prod(kernel)), -1)
        y = np.matmul(w.reshape(groups, m, -1), cols).reshape(n, c_out, *out_sizes)
    if bias is not None:
        y = y + _f(bias).reshape(1, -1, *([1] * len(kernel)))
    return y.astype(np.float32)


def _depthwise(
    xp: np.ndarray, w: np.ndarray, m: int, out_sizes: list[int], strides: list[int], dilations: list[int]
) -> np.ndarray:
    """Convolution with one input channel per group: a weighted sum of shifted input slices, one per tap."""
    if m > 1:
        xp = np.repeat(xp, m, axis=1)  # output channel o reads input channel o // m
    kernel = w.shape[2:]
    y = np.zeros((xp.shape[0], w.shape[0], *out_sizes), dtype=np.float32)
    for tap in np.ndindex(*kernel):
        y += xp[_tap_index(tap, dilations, out_sizes, strides)] * w[(slice(None), 0, *tap)].reshape(
            1, -1, *([1] * len(kernel))
        )
    return y


def _tap_index(
    tap: tuple[int, ...], dilations: Sequence[int], out_sizes: Sequence[int], strides: Sequence[int]
) -> tuple[slice, ...]:
    """Index of the padded input that kernel tap ``tap`` multiplies, for every output position at once."""
    spatial = (
        slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilations, out_sizes, strides, strict=True)
    )
    return (slice(None), slice(None), *spatial)


def _pool_geometry(
    x: np.ndarray, kernel_sizes: Any, strides: Any, pad_type: str, pad: Any, ceil_mode: Any
) -> tuple[list[int], list[int], list[tuple[int, int]], list[int]]:
    kernel = _ints(kernel_sizes)
    strides, _ = _spatial_args(x, kernel, strides, None)
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, [1] * len(kernel))
    out = []
    for size, k, s, (pb, pe) in zip(x.shape[2:], kernel, strides, pads, strict=True):
        if bool(ceil_mode):
            # MIL's rule (coremltools spatial_dimensions_out_shape): PyTorch's, but the last window is dropped
            # only when it would start in the end padding of a padded input.
            o = (size + pb + pe - k + s - 1) // s + 1
            if (o - 1) * s >= size + pb and (pb > 0 or pe > 0):
                o -= 1
        else:
            o = (size + pb + pe - k) // s + 1
        out.append(o)
    return kernel, strides, pads, out


def _pool_input(x: np.ndarray, pads: list[tuple[int, int]], kernel, strides, out, value: float) -> np.ndarray:
    """``x`` padded by ``pads`` plus the ``ceil_mode`` overhang that the last windows reach past the end."""
    full = []
    for size, (pb, pe), k, s, o in zip(x.shape[2:], pads, kernel, strides, out, strict=True):
        extra = max((o - 1) * s + k - (size + pb + pe), 0)
        full.append((pb, pe + extra))
    return np.pad(x, [(0, 0), (0, 0), *full], constant_values=value)


@op("max_pool")
def _max_pool(
    x: Any, kernel_sizes: Any, strides: Any = None, pad_type: str = "valid", pad: Any = None, ceil_mode: Any = False
) -> np.ndarray:
    x = _f(x)
    kernel, strides, pads, out = _pool_geometry(x, kernel_sizes, strides, pad_type, pad, ceil_mode)
    xp = _pool_input(x, pads, kernel, strides, out, -np.inf)
    win = _windows(xp, kernel, strides, [1] * len(kernel))
    win = win[(slice(None), slice(None), *(slice(0, o) for o in out))]
    return win.max(axis=tuple(range(-len(kernel), 0)))


@op("avg_pool")
def _avg_pool(
    x: Any,
    kernel_sizes: Any,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    exclude_padding_from_average: Any = False,
    ceil_mode: Any = False,
) -> np.ndarray:
    x = _f(x)
    kernel, strides, pads, out = _pool_geometry(x, kernel_sizes, strides, pad_type, pad, ceil_mode)
    nd = len(kernel)
    sl = (slice(None), slice(None), *(slice(0, o) for o in out))
    axes = tuple(range(-nd, 0))
    total = _windows(_pool_input(x, pads, kernel, strides, out, 0.0), kernel, strides, [1] * nd)[sl].sum(axis=axes)
    # Divisor: the window's cells inside the input (exclude_padding) or inside input plus explicit padding;
    # never the ceil_mode overhang (as PyTorch).
    ones = np.ones((1, 1, *x.shape[2:]), dtype=np.float32)
    if not bool(exclude_padding_from_average):
        ones = np.pad(ones, [(0, 0), (0, 0), *pads], constant_values=1.0)
        inner = [(0, 0)] * nd
    else:
        inner = pads
    mask = _pool_input(ones, inner, kernel, strides, out, 0.0)
    count = _windows(mask, kernel, strides, [1] * nd)[sl].sum(axis=axes)
    return total / count


# ---- reductions and normalization ------------------------------------------------------------------------------


def _reduction(fn: Callable[..., np.ndarray]) -> OpFunction:
    def impl(x: Any, axes: Any = None, keep_dims: Any = False) -> np.ndarray:
        x = _f(x)
        ax = None if axes is None else tuple(_axis(a, x.ndim) for a in _ints(axes))
        return np.asarray(fn(x, axis=ax, keepdims=bool(keep_dims)))

    return impl


for _name, _fn in {
    "reduce_mean": np.mean,
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
}.items():
    op(_name)(_reduction(_fn))


@op("batch_norm")
def _batch_norm(
    x: Any, mean: Any, variance: Any, gamma: Any = None, beta: Any = None, epsilon: Any = 1e-5
) -> np.ndarray:
    x = _f(x)
    shape = (1, -1, *([1] * (x.ndim - 2)))
    scale = 1.0 / np.sqrt(_f(variance) + np.float32(epsilon))
    if gamma is not None:
        scale = scale * _f(gamma)
    y = (x - _f(mean).reshape(shape)) * scale.reshape(shape)
    return y if beta is None else y + _f(beta).reshape(shape)


# ---- tensor shape and layout ---------------------------------------------------------------------------------


@op("reshape")
def _reshape(x: Any, shape: Any) -> np.ndarray:
    x = np.asarray(x)
    target = _ints(shape)
    # 0 copies the input's dimension at the same position (MIL iOS15/16 reshape; the shape has rank(x) entries).
    target = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(target)]
    return x.reshape(target)


@op("transpose")
def _transpose(x: Any, perm: Any) -> np.ndarray:
    return np.transpose(np.asarray(x), _ints(perm))


@op("expand_dims")
def _expand_dims(x: Any, axes: Any) -> np.ndarray:
    x = np.asarray(x)
    rank = x.ndim + len(_ints(axes))
    return np.expand_dims(x, tuple(sorted(_axis(a, rank) for a in _ints(axes))))


@op("squeeze")
def _squeeze(x: Any, axes: Any = None) -> np.ndarray:
    x = np.asarray(x)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(_axis(a, x.ndim) for a in _ints(axes)))


@op("concat")
def _concat(values: Any, axis: Any, interleave: Any = False) -> np.ndarray:
    values = [np.asarray(v) for v in (values if isinstance(values, list) else [values])]
    a = _axis(axis, values[0].ndim)
    if not bool(interleave):
        return np.concatenate(values, axis=a)
    # Interleave equal-shaped inputs along ``axis``: out[i::n] = values[i].
    stacked = np.stack(values, axis=a + 1)
    shape = list(values[0].shape)
    shape[a] *= len(values)
    return stacked.reshape(shape)


@op("split")
def _split(x: Any, axis: Any, num_splits: Any = None, split_sizes: Any = None) -> tuple[np.ndarray, ...]:
    x = np.asarray(x)
    a = _axis(axis, x.ndim)
    if split_sizes is not None:
        bounds = np.cumsum(_ints(split_sizes))[:-1]
        return tuple(np.split(x, bounds, axis=a))
    return tuple(np.split(x, int(num_splits), axis=a))


@op("slice_by_index")
def _slice_by_index(
    x: Any,
    begin: Any,
    end: Any,
    stride: Any = None,
    begin_mask: Any = None,
    end_mask: Any = None,
    squeeze_mask: Any = None,
) -> np.ndarray:
    x = np.asarray(x)
    n = x.ndim
    b, e = _ints(begin), _ints(end)
    s = _ints(stride) if stride is not None else [1] * n
    bm = [bool(v) for v in np.asarray(begin_mask).reshape(-1)] if begin_mask is not None else [False] * n
    em = [bool(v) for v in np.asarray(end_mask).reshape(-1)] if end_mask is not None else [False] * n
    sq = [bool(v) for v in np.asarray(squeeze_mask).reshape(-1)] if squeeze_mask is not None else [False] * n
    index: list[Any] = []
    for i in range(n):
        if sq[i]:
            index.append(b[i])
        else:
            index.append(slice(None if bm[i] else b[i], None if em[i] else e[i], s[i]))
    return x[tuple(index)]


@op("slice_by_size")
def _slice_by_size(x: Any, begin: Any, size: Any) -> np.ndarray:
    x = np.asarray(x)
    index = []
    for i, (b, sz) in enumerate(zip(_ints(begin), _ints(size), strict=True)):
        b = b + x.shape[i] if b < 0 else b
        index.append(slice(b, None if sz == -1 else b + sz))
    return x[tuple(index)]


@op("pad")
def _pad(x: Any, pad: Any, mode: str = "constant", constant_val: Any = 0.0) -> np.ndarray:
    x = _f(x)
    p = _ints(pad)
    k = len(p) // 2  # pad covers the last k axes
    widths = [(0, 0)] * (x.ndim - k) + [(p[2 * i], p[2 * i + 1]) for i in range(k)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=float(np.asarray(constant_val)))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise ValueError(f"unknown pad mode {mode!r}")


@op("gather")
def _gather(x: Any, indices: Any, axis: Any = 0, batch_dims: Any = 0, validate_indices: Any = False) -> np.ndarray:
    x, idx = np.asarray(x), np.asarray(indices).astype(np.int64)
    a = _axis(axis, x.ndim)
    if int(batch_dims) != 0:
        raise ValueError("gather with batch_dims != 0 is not implemented")
    if idx.size and (idx.min() < -x.shape[a] or idx.max() >= x.shape[a]):
        raise ValueError(f"gather index out of range for axis {a} of size {x.shape[a]}")
    return np.take(x, idx, axis=a)


@op("gather_along_axis")
def _gather_along_axis(x: Any, indices: Any, axis: Any = 0, validate_indices: Any = False) -> np.ndarray:
    x = np.asarray(x)
    return np.take_along_axis(x, np.asarray(indices).astype(np.int64), axis=_axis(axis, x.ndim))


@op("tile")
def _tile(x: Any, reps: Any) -> np.ndarray:
    return np.tile(np.asarray(x), _ints(reps))


@op("shape")
def _shape(x: Any) -> np.ndarray:
    return np.asarray(np.asarray(x).shape, dtype=np.int32)
