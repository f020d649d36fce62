"""Parity figures on known logits, the tolerance table, and batching of fixed-batch artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.errors import DeployError, ParityError
from deploy.images import parity_images
from deploy.parity import TOLERANCES, compare_logits, predict, raise_if_failed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CTX = dict(stage="test", runtime="numpy", runtime_version="2", threads=1, batch=1)


def test_figures_are_exact() -> None:
    ref = np.array([[1.0, 5.0, 2.0], [4.0, -8.0, 0.0]], dtype=np.float32)
    out = ref + np.array([[0.0, 2**-17, 0.0], [-(2**-16), 0.0, 0.0]], dtype=np.float32)  # exact in float32
    r = compare_logits(ref, out, precision="fp32", **CTX)
    assert r.max_abs_error == 2**-16
    assert r.max_rel_error == 2**-16 / 8  # relative to max |reference logit|
    assert r.top1_agreement == 1.0 and r.near_ties == 0 and r.passed
    assert r.accuracy_drop is None


def test_near_tie_is_excused_but_a_real_flip_fails() -> None:
    ref = np.array([[1.0, 1.00001, 0.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    tie = ref.copy()
    tie[0] = [1.00001, 1.0, 0.0]  # top-1 flips within an error of 1e-5 (< 1e-4 of max |logit| 3)
    r = compare_logits(ref, tie, precision="fp32", **CTX)
    assert r.top1_agreement == 0.5 and r.near_ties == 1 and r.passed
    flip = ref.copy()
    flip[1] = [3.0, 0.0, 1.0]  # a 3-logit swap: an error far beyond tolerance, no tie
    r = compare_logits(ref, flip, precision="fp16", **CTX)
    assert r.near_ties == 0 and not r.passed
    assert any("top-1 agreement 50.0% (near ties excused) < 100%" in f for f in r.failures)


def test_int8_excuses_near_ties_but_not_real_flips() -> None:
    ref = np.zeros((200, 5))
    ref[:, 0], ref[:, 1] = 4.0, 1.0  # class 0 on top; max |logit| 4, so the int8 error tolerance is 1.0
    ref[:50, 1] = 3.9  # 50 images with a thin margin of 0.1
    out = ref.copy()
    out[:50, 1] = 4.05  # they flip to class 1 by an error of 0.15: within tolerance, near ties
    r = compare_logits(ref, out, precision="int8", **CTX)
    assert r.top1_agreement == 0.75 and r.near_ties == 50 and r.passed, r.describe()
    out[:50, 1] = 5.6  # the same flips by an error of 1.7, beyond tolerance: real, not excused
    r = compare_logits(ref, out, precision="int8", **CTX)
    assert r.top1_agreement == 0.75 and r.near_ties == 0
    assert "top-1 agreement 75.0% (near ties excused) < 80%" in r.failures and len(r.failures) == 2


def test_int8_bounds_the_99th_percentile_image_and_fp_bounds_every_image() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((1000, 10)) * 2
    ref[:, 0] += 8  # a clear top-1 everywhere; max |logit| near 10
    scale = np.abs(ref).max()
    out = ref.copy()
    out[:, 1:] += 0.05 * scale  # every image 5 % off, top-1 unchanged
    out[:10, 1:] += 0.35 * scale  # 10 images (1 %) 40 % off: the outliers a large check meets
    r = compare_logits(ref, out, precision="int8", **CTX)
    assert r.max_rel_error == pytest.approx(0.40) and r.quantile_rel_error == pytest.approx(0.05)
    assert r.passed and r.tolerance.error_quantile == 0.99 and "(p99 image 5.00e-02)" in r.describe()
    out[10, 1:] += 0.35 * scale  # an 11th outlier (1.1 %): the 99th-percentile image is now one of them
    r = compare_logits(ref, out, precision="int8", **CTX)
    assert not r.passed and r.failures == ["99th-percentile image's relative error 4.00e-01 > 0.25"]
    r = compare_logits(ref, ref + np.where(np.arange(1000)[:, None] == 7, 0.03 * scale, 0.0), precision="fp16", **CTX)
    assert r.quantile_rel_error == r.max_rel_error and r.failures == ["max relative error 3.00e-02 > 0.02"]


def test_a_shortfall_is_never_printed_as_100_percent() -> None:
    ref = np.tile([[0.0, 5.0, 1.0]], (10000, 1))
    out = ref.copy()
    out[0] = [5.0, 0.0, 1.0]  # one image in 10 000 flips, far beyond a tie
    r = compare_logits(ref, out, precision="fp32", **CTX)
    assert "top-1 agreement 99.99% (0 near ties)" in r.describe()
    assert "top-1 agreement 99.99% (near ties excused) < 100%" in r.failures[1]


def test_accuracy_drop_only_bounds_int8() -> None:
    ref = np.eye(4, dtype=np.float32) * 4
    out = ref.copy()
    out[0] = [0, 4.5, 0, 0]  # image 0 now wrong
    labels = np.arange(4)
    r = compare_logits(ref, out, precision="int8", labels=labels, **CTX)
    assert (r.accuracy_reference, r.accuracy_artifact, r.accuracy_drop) == (100.0, 75.0, 25.0)
    assert any("accuracy drop 25.00 points" in f for f in r.failures)
    with pytest.raises(ParityError, match="accuracy drop") as info:
        raise_if_failed(r)
    assert info.value.result is r


def test_non_finite_logits_fail() -> None:
    ref = np.ones((2, 3), dtype=np.float32)
    out = ref.copy()
    out[1, 2] = np.nan
    r = compare_logits(ref, out, precision="fp16", **CTX)
    assert not r.passed and "non-finite logits" in r.failures


def test_shape_mismatch_and_unknown_precision_are_errors() -> None:
    with pytest.raises(DeployError, match="differs"):
        compare_logits(np.ones((2, 3)), np.ones((2, 4)), precision="fp32", **CTX)
    with pytest.raises(DeployError, match="valid: fp32, fp16, int8"):
        compare_logits(np.ones((2, 3)), np.ones((2, 3)), precision="bf16", **CTX)


def test_tolerance_table_is_ordered_by_precision() -> None:
    fp32, fp16, int8 = (TOLERANCES[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.max_rel_error < fp16.max_rel_error < int8.max_rel_error
    assert fp32.min_top1_agreement == fp16.min_top1_agreement == 1.0 > int8.min_top1_agreement
    assert int8.max_accuracy_drop == 1.0


def test_parity_images_are_real_balanced_and_normalized() -> None:
    x, labels, classes = parity_images(20, 32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32
    assert len(classes) == 10 and classes[0] == "T-shirt/top"
    assert np.bincount(labels, minlength=10).tolist() == [2] * 10
    assert x.min() >= -2.0 - 1e-6 and x.max() <= 2.0 + 1e-6  # (0..1 - 0.5) / 0.25
    assert not x.flags.writeable  # shared between stages: nobody may change them


def test_predict_pads_the_last_call_of_a_fixed_batch_artifact(tmp_path) -> None:
    import torch

    from deploy.onnx_export import export_onnx
    from deploy.targets.onnx import OnnxArtifact

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    export_onnx(net, tmp_path / "b3.onnx", input_shape=(3, 3, 8, 8))
    artifact = OnnxArtifact.load(tmp_path / "b3.onnx", threads=1)
    x = np.random.default_rng(0).standard_normal((7, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    out = predict(artifact, x)  # calls of 3, 3 and 1 padded to 3
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(DeployError, match=r"takes float32 \(3, 3, 8, 8\)"):
        artifact(x[:2])
