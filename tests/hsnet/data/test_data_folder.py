"""Image-folder datasets: both layouts, the fixed split rule, decoding to RGB at one size, and bad trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hsnet.data import DataError, load_arrays
from hsnet.data.folder import _in_test, folder_layout


def _img(path: Path, color, *, size=(20, 10), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_split_folders_layout(tmp_path):
    _img(tmp_path / "train" / "cat" / "a.png", (255, 0, 0))
    _img(tmp_path / "train" / "cat" / "b.JPG", (250, 0, 0))
    _img(tmp_path / "train" / "ant" / "c.png", 128, mode="L")  # gray -> RGB
    _img(tmp_path / "train" / "ant" / "d.png", (0, 0, 255, 255), mode="RGBA")
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored: not an image suffix")
    (tmp_path / "train" / ".hidden").mkdir()
    _img(tmp_path / "test" / "cat" / "e.png", (0, 255, 0))
    train = load_arrays("folder", "train", data_dir=tmp_path, image_size=8)
    assert train.classes == ("ant", "cat")  # sorted folder names
    assert train.images.shape == (4, 8, 8, 3) and train.labels.tolist() == [0, 0, 1, 1]
    assert train.images[0].tolist() == [[[128, 128, 128]] * 8] * 8
    assert train.images[1, 0, 0].tolist() == [0, 0, 255]
    assert abs(int(train.images[3, 4, 4, 0]) - 250) <= 3 and train.images[3, 4, 4, 1] <= 3  # JPEG, lossy
    test = load_arrays("folder", "test", data_dir=tmp_path, image_size=8)
    assert test.classes == train.classes and test.labels.tolist() == [1]
    assert (test.name, test.split, test.source) == ("folder", "test", str(tmp_path))


def test_flat_layout_uses_a_stable_name_hash_split(tmp_path):
    names = [f"img{i:03d}.png" for i in range(40)]
    for i, n in enumerate(names):
        _img(tmp_path / ("dog" if i % 2 else "bird") / n, (i, i, i))
    _, train = folder_layout(tmp_path, "train")
    _, test = folder_layout(tmp_path, "test")
    assert len(train) + len(test) == 40 and {p for p, _ in train}.isdisjoint({p for p, _ in test})
    assert 0 < len(test) < 20  # about 20 %
    assert all(_in_test(p.parent.name, p.name) for p, _ in test)
    # adding images never moves existing ones
    _img(tmp_path / "dog" / "new.png", (1, 2, 3))
    assert {p for p, _ in test} <= {p for p, _ in folder_layout(tmp_path, "test")[1]}
    arrays = load_arrays("folder", "test", data_dir=tmp_path)
    assert arrays.images.shape[1:] == (64, 64, 3)  # default size


def test_aspect_ratio_is_kept_by_center_crop(tmp_path):
    img = Image.new("RGB", (30, 10), (0, 0, 0))
    img.paste((255, 255, 255), (10, 0, 20, 10))  # white middle third
    img.save(_img(tmp_path / "train" / "a" / "x.png", 0))
    arrays = load_arrays("folder", "train", data_dir=tmp_path, image_size=10)
    assert arrays.images[0].min() >= 250  # only the white center survives the square crop


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda r: None, r"image folder not found"),
        (lambda r: r.mkdir(), r"no class folders"),
        (lambda r: (r / "cat").mkdir(parents=True), r"cat: class folder holds no images"),
        (lambda r: (_img(r / "train" / "a" / "x.png", 0), (r / "test" / "zebra").mkdir(parents=True)),
         r"class 'zebra' is not among the train classes \(a\)"),
        (lambda r: _img(r / "test" / "a" / "x.png", 0), r"has test/ but no train/ folder"),
        (lambda r: (r / "train" / "a").mkdir(parents=True) or (r / "train" / "a" / "broken.png").write_bytes(b"no"),
         r"broken.png: cannot decode image"),
    ],
)  # fmt: skip
def test_bad_trees_name_the_problem(tmp_path, build, message):
    root = tmp_path / "root"
    build(root)
    with pytest.raises(DataError, match=message):
        load_arrays("folder", "train", data_dir=root)


def test_folder_needs_a_data_dir_and_does_not_download(tmp_path):
    with pytest.raises(DataError, match=r"needs a data dir"):
        load_arrays("folder", "train")
    with pytest.raises(DataError, match=r"--download is for the named datasets"):
        load_arrays("folder", "train", data_dir=tmp_path, download=True)


def test_truncated_image_names_the_file(tmp_path):
    path = tmp_path / "train" / "a" / "x.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])  # noise does not compress: 200 bytes is a fraction of the data
    with pytest.raises(DataError, match=r"x.png: cannot decode image"):
        load_arrays("folder", "train", data_dir=tmp_path)
