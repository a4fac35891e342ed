"""Readers: every DATA form reads, and each bad input is a one-line error naming the file."""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import read_dataset
from PIL import Image


def write_idx(path: Path, array: np.ndarray, gz: bool = True, dims: tuple[int, ...] | None = None) -> Path:
    dims = array.shape if dims is None else dims
    data = struct.pack(f">I{len(dims)}I", 0x800 | len(dims), *dims) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def small() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), np.repeat(np.arange(3), 4)


def test_embedded_subset_reads_with_paper_ratio():
    data = read_dataset(fmnist_mini("train"))
    assert data.images.shape == (900, 28, 28) and data.images.dtype == np.uint8
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.class_counts().tolist() == [400, 200, 100, 75, 50, 35, 20, 10, 6, 4]
    assert data.image_shape == (1, 28, 28)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_raw_and_gzip(tmp_path, small, gz):
    images, labels = small
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images, gz)
    write_idx(tmp_path / f"x-labels-idx1-ubyte{suffix}", labels, gz)
    data = read_dataset(tmp_path / f"x-images-idx3-ubyte{suffix}")
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)


def test_idx_labels_given_explicitly(tmp_path, small):
    images, labels = small
    write_idx(tmp_path / "imgs.idx", images)
    write_idx(tmp_path / "my-labels.idx", labels)
    assert len(read_dataset(tmp_path / "imgs.idx", labels=tmp_path / "my-labels.idx").labels) == 12


def test_npz_and_npz_directory(tmp_path, small):
    images, labels = small
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    data = read_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.images, images)
    shards = tmp_path / "shards"
    shards.mkdir()
    np.savez(shards / "a.npz", images=images[:5], labels=labels[:5])
    np.savez(shards / "b.npz", images=images[5:], labels=labels[5:])
    both = read_dataset(shards)
    np.testing.assert_array_equal(both.images, images)
    np.testing.assert_array_equal(both.labels, labels)


def test_string_labels_sort_numbers_numerically(tmp_path, small):
    images, _ = small
    names = np.array(["10", "9", "cat"] * 4)
    np.savez(tmp_path / "d.npz", images=images, labels=names)
    assert read_dataset(tmp_path / "d.npz").classes == ("9", "10", "cat")


def test_image_folder_grayscale_and_rgb(tmp_path, small):
    images, labels = small
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / f"c{label}").mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / f"c{label}" / f"{i:03d}.png")
    data = read_dataset(tmp_path)
    assert data.classes == ("c0", "c1", "c2")
    np.testing.assert_array_equal(data.images, images)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(tmp_path / "c0" / "rgb.jpg")
    assert read_dataset(tmp_path).images.shape == (13, 28, 28, 3)


# --- bad inputs ---------------------------------------------------------------------------


def expect_error(path, match, **kwargs):
    with pytest.raises(DeepSMOTEError, match=match) as info:
        read_dataset(path, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.npz", "no such file")


def test_idx_truncated(tmp_path, small):
    images, labels = small
    path = write_idx(tmp_path / "t-images-idx3-ubyte", images, gz=False)
    write_idx(tmp_path / "t-labels-idx1-ubyte", labels, gz=False)
    path.write_bytes(path.read_bytes()[:-100])
    message = expect_error(path, "truncated")
    assert str(path) in message


def test_idx_header_claiming_billions_is_refused_before_allocating(tmp_path, small):
    images, labels = small
    path = write_idx(tmp_path / "b-images-idx3-ubyte.gz", images, dims=(3_000_000_000, 28, 28))
    write_idx(tmp_path / "b-labels-idx1-ubyte.gz", labels)
    expect_error(path, "header says")


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "m-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 100)
    expect_error(path, "not an IDX uint8 images file")


def test_idx_label_count_mismatch(tmp_path, small):
    images, labels = small
    path = write_idx(tmp_path / "n-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "n-labels-idx1-ubyte.gz", labels[:-1])
    expect_error(path, "11 labels for 12 images")


def test_idx_labels_file_missing(tmp_path, small):
    path = write_idx(tmp_path / "o-images-idx3-ubyte.gz", small[0])
    expect_error(path, "give it with `labels`")


def test_npz_missing_key(tmp_path, small):
    np.savez(tmp_path / "d.npz", images=small[0])
    expect_error(tmp_path / "d.npz", "missing array 'labels'")


def test_npz_float_images(tmp_path, small):
    np.savez(tmp_path / "d.npz", images=small[0].astype(np.float32), labels=small[1])
    expect_error(tmp_path / "d.npz", "must be uint8")


def test_npz_object_labels_are_not_unpickled(tmp_path, small):
    np.savez(tmp_path / "d.npz", images=small[0], labels=np.array([object()] * 12, dtype=object))
    expect_error(tmp_path / "d.npz", "no pickles")


def test_npz_label_shape_mismatch(tmp_path, small):
    np.savez(tmp_path / "d.npz", images=small[0], labels=small[1][:5])
    expect_error(tmp_path / "d.npz", "'labels' has shape")


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"garbage")
    expect_error(tmp_path / "d.npz", "not a valid .npz")


def test_image_folder_mixed_sizes(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a" / "1.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "a" / "2.png")
    expect_error(tmp_path, "differs from 28x28")


def test_image_folder_unreadable_image(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    expect_error(tmp_path, "unreadable image")


def test_image_folder_skips_non_images_and_empty_classes_with_warnings(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a" / "1.png")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_dataset(tmp_path)
    assert data.classes == ("a",)
    messages = " ".join(str(w.message) for w in caught)
    assert "non-image" in messages and "class 'empty' skipped" in messages


def test_directory_without_data(tmp_path):
    expect_error(tmp_path, "neither class subdirectories")
