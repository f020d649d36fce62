"""Model input and training batches: resizing, normalization, augmentation, determinism, resumption, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsnet.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataError,
    ImageArrays,
    balanced_indices,
    channel_stats,
    real_images,
    to_model_input,
)
from hsnet.data.loader import make_dataset, make_loader
from hsnet.data.mnist import DEBIAN_FASHION_MNIST_DIR
from hsnet.data.transforms import crop, hflip, normalize, random_crop, random_hflip


def _arrays(n: int = 40, chans: int = 3, size: int = 8, classes: int = 4, seed: int = 0) -> ImageArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, chans), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.int64)
    return ImageArrays(images, labels, tuple(f"c{i}" for i in range(classes)), "folder", "train", "memory")


def _rows(x: torch.Tensor) -> list[bytes]:
    return sorted(r.numpy().tobytes() for r in x.reshape(x.shape[0], -1))


# ---- transforms on known tensors -----------------------------------------------------------------------------


def test_crop_is_a_zero_padded_window():
    x = torch.arange(1, 2 * 2 * 4 * 4 + 1, dtype=torch.float32).view(2, 2, 4, 4)
    dy, dx = torch.tensor([0, 2]), torch.tensor([1, 1])
    out = crop(x, dy, dx, padding=1)
    padded = F.pad(x, (1, 1, 1, 1))
    assert torch.equal(out[0], padded[0, :, 0:4, 1:5]) and torch.equal(out[1], padded[1, :, 2:6, 1:5])
    assert out[0, :, 0].abs().sum() == 0  # the first row came from the zero padding
    assert torch.equal(out[1, 0, 0], x[1, 0, 1])  # dy = 2 with padding 1: shifted up by one row
    assert torch.equal(crop(x, torch.tensor([1, 1]), torch.tensor([1, 1]), 1), x)  # centered: identity
    assert torch.equal(crop(x, dy, dx, 1, torch.tensor([True, False]))[0], out[0].flip(2))  # flip folded in
    assert torch.equal(crop(x, dy * 0, dx * 0, 0), x)
    assert crop(x.to(torch.uint8), dy, dx, 1).dtype == torch.uint8


def test_flip_and_normalize():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    out = hflip(x, torch.tensor([False, True]))
    assert torch.equal(out[0], x[0]) and out[1, 0, 0].tolist() == [8.0, 7.0, 6.0]
    u8 = torch.full((1, 3, 2, 2), 51, dtype=torch.uint8)
    assert torch.allclose(normalize(u8, (0.2, 0.1, 0.0), (0.5, 0.5, 2.0))[0, :, 0, 0], torch.tensor([0.0, 0.2, 0.1]))


def test_random_transforms_follow_their_generator():
    x = torch.rand(16, 3, 8, 8)
    a = random_hflip(random_crop(x, 2, torch.Generator().manual_seed(5)), torch.Generator().manual_seed(6))
    b = random_hflip(random_crop(x, 2, torch.Generator().manual_seed(5)), torch.Generator().manual_seed(6))
    c = random_crop(x, 2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- model input ---------------------------------------------------------------------------------------------


def test_to_model_input_values_and_channels():
    gray = np.full((2, 28, 28, 1), 51, dtype=np.uint8)  # 0.2
    x = to_model_input(gray, input_size=32, in_chans=3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.allclose(x[:, 0], 0.2, atol=1e-6) and np.allclose(x[:, 1], 0.0, atol=1e-6)
    assert np.allclose(x[:, 2], -0.2, atol=1e-6)
    rgb = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    rgb[..., 1] = 255  # pure green -> luminance 0.587
    assert np.all(to_model_input(rgb, input_size=4, in_chans=1, mean=[0], std=[1]) == np.float32(150 / 255))  # 149.7
    # shrinking antialiases: a 1-pixel checkerboard becomes flat gray instead of aliasing
    board = ((np.indices((48, 48)).sum(0) % 2) * 255).astype(np.uint8)[None, ..., None]
    small = to_model_input(board, input_size=16, in_chans=1, mean=[0], std=[1])
    assert abs(small.mean() - 0.5) < 0.02 and small.std() < 0.1
    # the same images through the training path give the same values: both round resized pixels to 8 bits
    images = _arrays(6, chans=1, size=28).images
    ds = make_dataset(_arrays(6, chans=1, size=28), input_size=32, mean=[0.5], std=[0.25])
    x_eval = to_model_input(images, input_size=32, mean=[0.5], std=[0.25])
    x_train = next(iter(make_loader(ds, 6, shuffle=False, augment=False)))[0].numpy()
    assert np.abs(x_eval - x_train).max() <= 1e-6
    with pytest.raises(DataError, match=r"mean has 2 values; give 1 or 3"):
        to_model_input(gray, input_size=8, mean=(0, 0), std=(1,))
    with pytest.raises(DataError, match=r"expected uint8 images"):
        to_model_input(gray.astype(np.float32), input_size=8, mean=(0,), std=(1,))


def test_channel_stats_and_balanced_indices():
    arrays = _arrays(10, chans=3)
    mean, std = channel_stats(arrays)
    pixels = arrays.images.reshape(-1, 3) / 255.0
    assert np.allclose(mean, pixels.mean(0)) and np.allclose(std, pixels.std(0))
    labels = np.array([0] * 6 + [1] * 3 + [2] * 3)
    order = balanced_indices(labels, seed=3)
    assert sorted(order.tolist()) == list(range(12))
    assert sorted(labels[order[:9]].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(order[:5], balanced_indices(labels, 5, seed=3))
    assert not np.array_equal(order, balanced_indices(labels, seed=4))
    with pytest.raises(DataError, match=r"cannot pick 13 images from a split of 12"):
        balanced_indices(labels, 13)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_images_are_fixed_and_class_balanced():
    x, y, classes = real_images(30, 32, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
    assert x.shape == (30, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [3] * 10 and classes[9] == "Ankle boot"
    x2, y2, _ = real_images(30, 32, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert abs(float(x.mean())) < 0.5  # normalized with the dataset's own statistics


# ---- the loader ----------------------------------------------------------------------------------------------


@pytest.fixture
def dataset():
    return make_dataset(_arrays(40), input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)


def _batches(ds, **kw):
    return list(make_loader(ds, kw.pop("batch_size", 8), shuffle=True, augment=True, **kw))


def test_batches_are_reproducible_and_change_with_epoch(dataset):
    a, b = _batches(dataset, seed=1, epoch=0), _batches(dataset, seed=1, epoch=0)
    assert len(a) == 5 and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    x, y = a[0]
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 and x.is_contiguous() and y.dtype == torch.int64
    other_epoch, other_seed = _batches(dataset, seed=1, epoch=1), _batches(dataset, seed=2, epoch=0)
    assert not torch.equal(a[0][1], other_epoch[0][1]) or not torch.equal(a[0][0], other_epoch[0][0])
    assert not torch.equal(a[0][0], other_seed[0][0])
    # every image once per epoch
    assert sorted(torch.cat([y for _, y in other_epoch]).tolist()) == sorted(dataset.labels.tolist())


def test_resume_mid_epoch_sees_the_same_batches(dataset):
    full = _batches(dataset, seed=3, epoch=2)
    resumed = _batches(dataset, seed=3, epoch=2, start_step=3)
    assert len(resumed) == 2 and all(torch.equal(r[0], f[0]) for r, f in zip(resumed, full[3:], strict=True))


def test_augmentation_is_crop_and_flip_of_the_original(dataset):
    plain = list(make_loader(dataset, 40, shuffle=False, augment=False))[0][0]
    flipped = list(make_loader(dataset, 40, shuffle=False, augment=True, padding=0, seed=9))[0][0]
    same = [torch.equal(flipped[i], plain[i]) for i in range(40)]
    mirrored = [torch.equal(flipped[i], plain[i].flip(2)) for i in range(40)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and 8 < sum(mirrored) < 32
    cropped = list(make_loader(dataset, 40, shuffle=False, augment=True, padding=2, flip=False, seed=9))[0][0]
    assert sum(torch.equal(cropped[i], plain[i]) for i in range(40)) < 10  # most are shifted
    black = (0.0 - 0.5) / 0.25
    assert (cropped == black).any()  # zero padding is black in pixel units, normalized afterwards


@pytest.mark.parametrize(("n", "drop_last"), [(40, False), (40, True), (37, True)])
def test_sharded_union_is_the_single_process_batch(n, drop_last):
    ds = make_dataset(_arrays(n), input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    kw = {"shuffle": True, "augment": True, "seed": 4, "epoch": 1, "drop_last": drop_last}
    single = list(make_loader(ds, 8, **kw))
    ranks = [list(make_loader(ds, 4, rank=r, world_size=2, **kw)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for step, (x, y) in enumerate(single):
        xs = torch.cat([ranks[r][step][0] for r in range(2)])
        ys = torch.cat([ranks[r][step][1] for r in range(2)])
        assert _rows(xs) == _rows(x) and sorted(ys.tolist()) == sorted(y.tolist())


def test_uneven_shards_are_padded_to_equal_steps():
    ds = make_dataset(_arrays(37), input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    ranks = [list(make_loader(ds, 4, shuffle=True, augment=False, rank=r, world_size=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [4, 4, 4]  # ceil(ceil(37 / 3) / 4)
    seen = torch.cat([x for r in ranks for x, _ in r])
    assert seen.shape[0] == 39 and len(set(_rows(seen))) == 37  # 2 repeats, every image present


def test_subset_is_class_balanced_and_fixed():
    arrays = _arrays(40)
    ds = make_dataset(arrays, input_size=8, mean=(0.5,), std=(0.25,), subset=12)
    assert len(ds) == 12 and np.bincount(ds.labels.numpy()).tolist() == [3, 3, 3, 3]
    again = make_dataset(arrays, input_size=8, mean=(0.5,), std=(0.25,), subset=12)
    assert torch.equal(ds.images, again.images)
    x, y = ds[0]
    assert x.shape == (3, 8, 8) and y == int(ds.labels[0])
    with pytest.raises(DataError, match=r"subset 41 is larger than the folder train split \(40\)"):
        make_dataset(arrays, input_size=8, mean=(0.5,), std=(0.25,), subset=41)


def test_gray_data_is_stored_once_and_replicated(tmp_path):
    ds = make_dataset(_arrays(4, chans=1, size=28), input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert ds.images.shape == (4, 1, 32, 32) and ds.images.dtype == torch.uint8
    x, _ = next(iter(make_loader(ds, 4, shuffle=False, augment=True, seed=0)))
    assert x.shape == (4, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_bad_loader_arguments(dataset):
    for kw, message in [
        ({"batch_size": 0}, r"batch size must be at least 1"),
        ({"rank": 2, "world_size": 2}, r"rank 2 is outside world size 2"),
        ({"batch_size": 32, "world_size": 2, "drop_last": True}, r"40 images cannot fill one batch of 32 x 2"),
    ]:
        with pytest.raises(DataError, match=message):
            make_loader(dataset, kw.pop("batch_size", 8), shuffle=True, augment=False, **kw)
