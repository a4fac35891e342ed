"""--resize and --crop: the size, the crop box, Pillow's filter, and the readers that apply them."""

from __future__ import annotations

import numpy as np
import pytest
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import read_dataset
from deepsmote.runtime.resize import Resize, check_image_shape, parse_resize
from PIL import Image


def test_parse_reads_height_then_width():
    assert parse_resize("48x40") == Resize(48, 40, "none")
    assert parse_resize(" 64X32 ", "center") == Resize(64, 32, "center")
    assert parse_resize(None) is None


@pytest.mark.parametrize(("text", "crop"), [("0x16", "none"), ("16", "none"), ("16x1025", "none"), ("axb", "none")])
def test_parse_refuses_what_is_not_a_size(text, crop):
    with pytest.raises(DeepSMOTEError, match=r"`resize` must be HxW with sides 1\.\.1024"):
        parse_resize(text, crop)


def test_crop_without_a_size_is_refused():
    with pytest.raises(DeepSMOTEError, match="`crop` center needs a target size"):
        parse_resize(None, "center")


def test_stretch_is_pillows_lanczos():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 30, 20), dtype=np.uint8)
    got = Resize(12, 16).images(images)
    expected = [np.asarray(Image.fromarray(i).resize((16, 12), Image.Resampling.LANCZOS)) for i in images]
    assert got.shape == (3, 12, 16) and np.array_equal(got, np.stack(expected))


def test_center_crop_keeps_the_middle_of_a_wide_image():
    # 10 x 30 (HxW): white left and right thirds, black middle; a square crop keeps the middle.
    image = np.full((1, 10, 30, 3), 255, dtype=np.uint8)
    image[:, :, 10:20] = 0
    assert Resize(10, 10, "center").images(image).max() == 0
    # Stretching keeps the white sides.
    assert Resize(10, 10, "none").images(image).max() == 255


def test_image_folder_of_mixed_sizes_reads_at_one_size(tmp_path):
    for name, (height, width) in {"a": (20, 30), "b": (40, 40)}.items():
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((height, width), 100 + i, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = read_dataset(tmp_path, resize=Resize(16, 24))
    assert data.images.shape == (4, 16, 24) and data.classes == ("a", "b")
    assert data.images[0].min() == data.images[0].max() == 100


def test_arrays_are_resized_after_reading(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 50, 60, 3), np.uint8), labels=np.array([0, 0, 1, 1]))
    assert read_dataset(tmp_path / "d.npz", resize=Resize(32, 32)).images.shape == (4, 32, 32, 3)


def test_shape_check_names_the_expected_size():
    check_image_shape((3, 64, 64), (3, 64, 64))
    with pytest.raises(DeepSMOTEError) as error:
        check_image_shape((3, 60, 50), (3, 64, 64))
    assert str(error.value) == (
        "DATA images are 60x50 (HxW), 3 channels but the bundle expects 64x64 (HxW), 3 channels; "
        "pass `resize` 64x64 or use a bundle of this size"
    )
