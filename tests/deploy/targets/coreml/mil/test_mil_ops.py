"""Every MIL operation of the numpy evaluator against an independent reference (PyTorch functional) on random input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.targets.coreml.mil.ops import OPS, supported_ops

RNG = np.random.default_rng(0)

#: Operation types the 19 registered models produce (fp32 and fp16, with and without the export rewrites), as
#: listed by converting each of them (tests/deploy/targets/coreml/test_coreml.py converts four; docs/deploy.md
#: lists all).
ZOO_OPS = {
    "add", "avg_pool", "cast", "clip", "concat", "const", "conv", "expand_dims", "gather", "linear", "matmul",
    "max_pool", "mul", "reduce_mean", "relu", "reshape", "sigmoid", "sigmoid_hard", "split", "sub",
    "thresholded_relu", "transpose",
}  # fmt: skip

TESTED: set[str] = set()


def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def run(op_type: str, **kwargs):
    TESTED.add(op_type)
    return OPS[op_type](**kwargs)


def close(got, want, tol: float = 1e-5) -> None:
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    got = np.asarray(got)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def test_zoo_ops_are_all_supported():
    assert set(supported_ops()) >= ZOO_OPS


# ---- convolution ---------------------------------------------------------------------------------------------

CONV_CASES = [
    # (c_in, c_out, kernel, stride, pad (top, bottom, left, right), dilation, groups, size)
    (3, 8, 3, 2, (1, 1, 1, 1), 1, 1, 9),  # stem, odd size
    (8, 8, 3, 1, (1, 1, 1, 1), 1, 8, 8),  # depthwise
    (8, 16, 3, 2, (1, 1, 1, 1), 1, 8, 8),  # depthwise with multiplier 2
    (8, 8, 5, 2, (2, 2, 2, 2), 1, 8, 9),  # depthwise 5x5 stride 2
    (16, 24, 1, 1, (0, 0, 0, 0), 1, 1, 6),  # pointwise
    (16, 24, 1, 2, (0, 0, 0, 0), 1, 4, 7),  # grouped pointwise, stride 2 (ResNet downsample)
    (12, 12, 3, 1, (1, 1, 1, 1), 1, 3, 6),  # grouped 3x3 (HetConv)
    (4, 6, 3, 1, (2, 2, 2, 2), 2, 1, 7),  # dilated
    (4, 6, 3, 2, (0, 1, 2, 0), 1, 2, 7),  # asymmetric custom padding, grouped
    (4, 6, (3, 1), 1, (1, 1, 0, 0), 1, 1, 5),  # (k, 1) kernel (ECA as Conv2d)
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(case, bias):
    c_in, c_out, k, s, pad, d, g, size = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x, w = rand(2, c_in, size, size), rand(c_out, c_in // g, kh, kw)
    b = rand(c_out) if bias else None
    got = run(
        "conv", x=x, weight=w, bias=b, strides=[s, s], pad_type="custom", pad=list(pad), dilations=[d, d], groups=g
    )
    top, bottom, left, right = pad
    want = F.conv2d(F.pad(t(x), (left, right, top, bottom)), t(w), None if b is None else t(b), s, 0, d, g)
    close(got, want, 1e-4)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("pad_type", ["valid", "same"])
def test_conv2d_pad_types_stride1(pad_type):
    x, w = rand(1, 4, 7, 6), rand(5, 4, 3, 2)
    got = run("conv", x=x, weight=w, strides=[1, 1], pad_type=pad_type, dilations=[1, 1], groups=1)
    close(got, F.conv2d(t(x), t(w), padding=pad_type), 1e-4)


@pytest.mark.parametrize("pad_type", ["same", "same_lower"])
def test_conv2d_same_stride2(pad_type):
    # TensorFlow's SAME rule: output ceil(in / stride); the odd pixel of padding goes after ("same") or before.
    x, w = rand(1, 3, 8, 8), rand(4, 3, 4, 4)
    got = run("conv", x=x, weight=w, strides=[2, 2], pad_type=pad_type, dilations=[1, 1], groups=1)
    total = (4 - 1) * 2 + 4 - 8  # (out - 1) * stride + kernel - in = 2
    small, large = total // 2, total - total // 2
    lo, hi = (small, large) if pad_type == "same" else (large, small)
    close(got, F.conv2d(F.pad(t(x), (lo, hi, lo, hi)), t(w), stride=2), 1e-4)


def test_conv1d():
    x, w = rand(2, 3, 11), rand(4, 3, 5)
    got = run("conv", x=x, weight=w, strides=[2], pad_type="custom", pad=[2, 2], dilations=[1], groups=1)
    close(got, F.conv1d(t(x), t(w), stride=2, padding=2), 1e-4)


def test_conv_rejects_mismatched_groups():
    with pytest.raises(ValueError, match="groups"):
        run("conv", x=rand(1, 6, 4, 4), weight=rand(4, 4, 1, 1), groups=2)


# ---- pooling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k,s,p,ceil,size",
    [(3, 2, 0, True, 13), (3, 2, 0, True, 32), (3, 2, 1, False, 15), (2, 2, 0, False, 8), (3, 2, 1, True, 10)],
)
def test_max_pool(k, s, p, ceil, size):
    x = rand(2, 3, size, size)
    got = run("max_pool", x=x, kernel_sizes=[k, k], strides=[s, s], pad_type="custom", pad=[p] * 4, ceil_mode=ceil)
    close(got, F.max_pool2d(t(x), k, s, p, ceil_mode=ceil))


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("k,s,p,ceil,size", [(3, 2, 1, False, 8), (3, 2, 1, True, 10), (2, 2, 0, True, 7)])
def test_avg_pool(k, s, p, ceil, size, exclude):
    x = rand(2, 3, size, size)
    got = run(
        "avg_pool", x=x, kernel_sizes=[k, k], strides=[s, s], pad_type="custom", pad=[p] * 4,
        exclude_padding_from_average=exclude, ceil_mode=ceil,
    )  # fmt: skip
    close(got, F.avg_pool2d(t(x), k, s, p, ceil_mode=ceil, count_include_pad=not exclude))


def test_pool_valid_pad_type():
    x = rand(1, 2, 6, 6)
    close(run("max_pool", x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), F.max_pool2d(t(x), 2))


# ---- linear algebra, element-wise, activations -----------------------------------------------------------------


def test_linear():
    x, w, b = rand(3, 7), rand(5, 7), rand(5)
    close(run("linear", x=x, weight=w, bias=b), F.linear(t(x), t(w), t(b)))
    close(run("linear", x=x, weight=w), F.linear(t(x), t(w)))


@pytest.mark.parametrize("tx,ty", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul(tx, ty):
    a, b = rand(2, 4, 3), rand(2, 3, 5)
    a_in = np.swapaxes(a, -1, -2).copy() if tx else a
    b_in = np.swapaxes(b, -1, -2).copy() if ty else b
    close(run("matmul", x=a_in, y=b_in, transpose_x=tx, transpose_y=ty), torch.matmul(t(a), t(b)))


@pytest.mark.parametrize(
    "name,ref",
    [
        ("add", torch.add),
        ("sub", torch.sub),
        ("mul", torch.mul),
        ("real_div", torch.div),
        ("maximum", torch.maximum),
        ("minimum", torch.minimum),
    ],
)
def test_binary_broadcast(name, ref):
    x, y = rand(2, 3, 4, 4), rand(1, 3, 1, 1) + 3.0
    close(run(name, x=x, y=y), ref(t(x), t(y)))


def test_pow_and_floor_div():
    x, y = np.abs(rand(3, 4)) + 0.5, rand(3, 4)
    close(run("pow", x=x, y=y), torch.pow(t(x), t(y)))
    close(run("floor_div", x=x * 10, y=np.float32(3.0)), torch.floor_divide(t(x * 10), 3.0))


UNARY = [
    ("relu", F.relu),
    ("relu6", F.relu6),
    ("sigmoid", torch.sigmoid),
    ("silu", F.silu),
    ("tanh", torch.tanh),
    ("exp", torch.exp),
    ("abs", torch.abs),
    ("floor", torch.floor),
    ("ceil", torch.ceil),
    ("square", torch.square),
    ("softplus", F.softplus),
    ("identity", lambda v: v),
]


@pytest.mark.parametrize("name,ref", UNARY, ids=[n for n, _ in UNARY])
def test_unary(name, ref):
    x = rand(2, 3, 5, scale=4.0)
    close(run(name, x=x), ref(t(x)))


def test_positive_domain_unary():
    x = np.abs(rand(4, 5)) + 0.1
    close(run("log", x=x), torch.log(t(x)))
    close(run("sqrt", x=x), torch.sqrt(t(x)))
    close(run("rsqrt", x=x, epsilon=1e-6), torch.rsqrt(t(x) + 1e-6))


def test_sigmoid_does_not_overflow():
    x = np.array([-1000.0, -20.0, 0.0, 20.0, 1000.0], dtype=np.float32)
    close(run("sigmoid", x=x), torch.sigmoid(t(x)))


def test_clip_is_hardtanh():
    x = rand(3, 8, scale=5.0)
    close(run("clip", x=x, alpha=np.float32(0.0), beta=np.float32(6.0)), F.hardtanh(t(x), 0.0, 6.0))


def test_hard_sigmoid_and_hard_swish_forms():
    # coremltools writes hardsigmoid as sigmoid_hard(alpha=1/6, beta=0.5) and hardswish as
    # mul(thresholded_relu(x, -3), sigmoid_hard(thresholded_relu(x, -3))).
    x = rand(4, 50, scale=4.0)
    a, b = np.float32(1 / 6), np.float32(0.5)
    close(run("sigmoid_hard", x=x, alpha=a, beta=b), F.hardsigmoid(t(x)))
    w = run("thresholded_relu", x=x, alpha=np.float32(-3.0))
    close(run("mul", x=w, y=run("sigmoid_hard", x=w, alpha=a, beta=b)), F.hardswish(t(x)))


def test_thresholded_and_leaky_relu():
    x = rand(3, 9, scale=3.0)
    close(run("thresholded_relu", x=x, alpha=np.float32(0.5)), F.threshold(t(x), 0.5, 0.0))
    close(run("leaky_relu", x=x, alpha=np.float32(0.1)), F.leaky_relu(t(x), 0.1))


def test_softmax():
    x = rand(2, 5, 3, scale=10.0)
    close(run("softmax", x=x, axis=1), torch.softmax(t(x), 1))


def test_cast_rounds_to_half():
    x = rand(100, scale=3.0)
    got = run("cast", x=x, dtype="fp16")
    assert got.dtype == np.float16
    close(got.astype(np.float32), t(x).half().float())
    assert run("cast", x=got, dtype="fp32").dtype == np.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        run("cast", x=x, dtype="fp8")


# ---- reductions and normalization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,ref",
    [("reduce_mean", torch.mean), ("reduce_sum", torch.sum), ("reduce_max", torch.amax), ("reduce_min", torch.amin)],
)
@pytest.mark.parametrize("keep", [True, False])
def test_reductions(name, ref, keep):
    x = rand(2, 3, 4, 5)
    close(run(name, x=x, axes=[-2, -1], keep_dims=keep), ref(t(x), dim=(-2, -1), keepdim=keep))


def test_reduce_prod_all_axes():
    x = rand(2, 3) * 0.5 + 1
    close(run("reduce_prod", x=x), torch.prod(t(x)))


def test_batch_norm():
    x, mean, var, g, b = rand(2, 4, 3, 3), rand(4), np.abs(rand(4)) + 0.5, rand(4), rand(4)
    close(
        run("batch_norm", x=x, mean=mean, variance=var, gamma=g, beta=b, epsilon=np.float32(1e-3)),
        F.batch_norm(t(x), t(mean), t(var), t(g), t(b), eps=1e-3),
    )


# ---- shape and layout ------------------------------------------------------------------------------------------


def test_reshape_transpose_expand_squeeze():
    x = rand(1, 6, 2, 2)
    close(run("reshape", x=x, shape=np.array([1, 3, 2, 4], dtype=np.int32)), t(x).reshape(1, 3, 2, 4))
    close(run("reshape", x=x, shape=[0, -1]), t(x).reshape(1, -1))
    close(run("transpose", x=x, perm=[0, 2, 3, 1]), t(x).permute(0, 2, 3, 1))
    close(run("expand_dims", x=x, axes=[-1]), t(x).unsqueeze(-1))
    y = rand(2, 3)
    close(run("expand_dims", x=y, axes=[0, 2]), t(y).unsqueeze(0).unsqueeze(2))
    z = rand(1, 3, 1, 1)
    close(run("squeeze", x=z, axes=[2, 3]), t(z).squeeze(3).squeeze(2))
    close(run("squeeze", x=z), t(z).squeeze())


def test_concat_and_interleave():
    a, b = rand(1, 4, 2, 2), rand(1, 4, 2, 2)
    close(run("concat", values=[a, b], axis=1), torch.cat([t(a), t(b)], 1))
    # interleave is concat followed by a 2-group channel shuffle (ShuffleNetV2).
    want = torch.cat([t(a), t(b)], 1).unflatten(1, (2, 4)).transpose(1, 2).flatten(1, 2)
    close(run("concat", values=[a, b], axis=1, interleave=True), want)
    close(run("concat", values=a, axis=-1), t(a))


def test_split():
    x = rand(1, 10, 2, 2)
    got = run("split", x=x, axis=1, split_sizes=[4, 6])
    for g, w in zip(got, torch.split(t(x), [4, 6], 1), strict=True):
        close(g, w)
    got = run("split", x=x, axis=1, num_splits=2)
    for g, w in zip(got, torch.chunk(t(x), 2, 1), strict=True):
        close(g, w)


def test_slices():
    x = rand(2, 8, 5, 5)
    close(
        run("slice_by_index", x=x, begin=[0, 1, 0, 0], end=[0, 7, 5, 4], stride=[1, 2, 1, 1],
            begin_mask=[True, False, False, False], end_mask=[True, False, True, False]),
        t(x)[:, 1:7:2, :, :4],
    )  # fmt: skip
    close(
        run("slice_by_index", x=x, begin=[0, 3, 0, 0], end=[0, 4, 0, 0], squeeze_mask=[False, True, False, False],
            begin_mask=[True, False, True, True], end_mask=[True, False, True, True]),
        t(x)[:, 3],
    )  # fmt: skip
    close(run("slice_by_size", x=x, begin=[0, 2, 1, 1], size=[-1, 3, 2, -1]), t(x)[:, 2:5, 1:3, 1:])


@pytest.mark.parametrize(
    "mode,torch_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "replicate")]
)
def test_pad(mode, torch_mode):
    x = rand(1, 2, 5, 5)
    kwargs = {"constant_val": np.float32(1.5)} if mode == "constant" else {}
    got = run("pad", x=x, pad=[1, 2, 0, 3], mode=mode, **kwargs)
    want = F.pad(t(x), (0, 3, 1, 2), mode=torch_mode, **({"value": 1.5} if mode == "constant" else {}))
    close(got, want)


def test_gather_is_index_select():
    x = rand(1, 6, 3, 3)
    perm = np.array([0, 3, 1, 4, 2, 5], dtype=np.int32)
    close(run("gather", x=x, indices=perm, axis=1), torch.index_select(t(x), 1, t(perm.astype(np.int64))))
    with pytest.raises(ValueError, match="out of range"):
        run("gather", x=x, indices=np.array([6]), axis=1)


def test_gather_along_axis_tile_shape():
    x = rand(3, 4)
    idx = RNG.integers(0, 4, size=(3, 2))
    close(run("gather_along_axis", x=x, indices=idx, axis=1), torch.gather(t(x), 1, torch.from_numpy(idx)))
    close(run("tile", x=x, reps=[2, 1]), t(x).repeat(2, 1))
    assert run("shape", x=x).tolist() == [3, 4]


def test_every_implemented_op_is_tested():
    """Runs last in this file (pytest keeps file order): each registered implementation was exercised above."""
    assert set(OPS) - TESTED == set()
