"""uint8 pixels converted inside onnxruntime (the CUDA default), run here on the CPU provider.

The pixel session's path is the one a GPU runs: the decoder's output bound where it lies, the
shipped ``pixels.onnx`` run on it, only uint8 copied out. On the CPU provider every step is the
same code with device "cpu", so these tests check its bytes against numpy's conversion.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.bundle import load_bundle, models, open_models
from deepsmote.runtime.bundle.pixel_session import FINITE_CHECK, PIXEL_INPUT, PIXEL_OUTPUT, pixel_graph
from deepsmote.runtime.pixels import from_model
from deepsmote.runtime.readers import read_dataset
from deepsmote.training.pixel_graph import build_pixel_graph


@pytest.fixture(scope="module")
def session():
    return onnxruntime.InferenceSession(pixel_graph(), providers=["CPUExecutionProvider"])


def rounding_boundaries() -> np.ndarray:
    """float32 values whose scaled level is k + 0.5 (as near as float32 gets), a step either side,
    values beyond [-1, 1], the ends, both zeros and a sweep."""
    half = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(127.5) - np.float32(1.0)
    sweep = np.linspace(-1.25, 1.25, 20_001, dtype=np.float32)
    ends = np.float32([-1.0, 1.0, 0.0, -0.0, -3.0, 7.0, np.nextafter(np.float32(1), np.float32(2))])
    return np.concatenate([half, np.nextafter(half, np.float32(2)), np.nextafter(half, np.float32(-2)), sweep, ends])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 7)])
def test_the_pixel_graph_gives_numpys_bytes_at_every_rounding_boundary(session, shape):
    values = rounding_boundaries()
    size = int(np.prod(shape))
    x = np.resize(values, (-(-len(values) // size)) * size).reshape(-1, *shape)
    pixels, check = session.run([PIXEL_OUTPUT, FINITE_CHECK], {PIXEL_INPUT: x})
    expected = from_model(x, grayscale_2d=False)
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape == (len(x), shape[1], shape[2], shape[0])
    assert pixels.tobytes() == expected.tobytes()
    # Every level is reached, including both ends, so the boundaries were really crossed.
    assert set(np.unique(pixels).tolist()) == set(range(256))
    assert check == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_finite_check_flags_a_single_bad_value(session, bad):
    x = np.zeros((4, 1, 28, 28), dtype=np.float32)
    x[2, 0, 13, 7] = bad
    assert np.isnan(session.run([FINITE_CHECK], {PIXEL_INPUT: x})[0])


def test_the_shipped_pixel_graph_is_the_one_the_builder_makes():
    assert build_pixel_graph().SerializeToString() == pixel_graph()


def test_the_pixel_session_is_opened_on_cuda_by_default_and_not_on_the_cpu(tiny_bundle):
    assert models._converts_in_session("CUDAExecutionProvider")
    assert open_models(load_bundle(tiny_bundle), "cpu").pixels is None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_decode_pixels_in_the_session_gives_the_bytes_of_numpy(tiny_bundle, threads, batch_size):
    bundle = load_bundle(tiny_bundle)
    codes = np.random.default_rng(3).standard_normal((45, bundle.latent_dim), dtype=np.float32) * 3
    in_numpy = open_models(bundle, "cpu", threads, encoder=False)
    in_session = open_models(bundle, "cpu", threads, encoder=False, pixels=True)
    assert in_session.pixels is not None and in_numpy.pixels is None
    expected = from_model(in_numpy.decode(codes), grayscale_2d=False)
    got = in_session.decode_pixels(codes, batch_size)
    assert got.dtype == np.uint8 and got.tobytes() == expected.tobytes()
    assert in_numpy.decode_pixels(codes, batch_size).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_the_sampler_gives_the_same_bytes_with_the_pixel_session(tiny_bundle, fmnist_mini, monkeypatch, dtype):
    data = read_dataset(fmnist_mini)
    images = data.images.astype(dtype)

    def resampled():
        sampler = DeepSMOTE(tiny_bundle, sampling_strategy={9: 40, 8: 30}, random_state=0, provider="cpu")
        return sampler.fit_resample(images, data.labels)

    x_numpy, y_numpy = resampled()
    calls = []
    real_decode, real_decode_pixels = models.Models.decode, models.Models.decode_pixels

    def decode(self, *args, **kwargs):
        calls.append("decode")
        return real_decode(self, *args, **kwargs)

    def decode_pixels(self, *args, **kwargs):
        calls.append("in session" if self.pixels is not None else "numpy")
        return real_decode_pixels(self, *args, **kwargs)

    monkeypatch.setattr(models, "_converts_in_session", lambda used: True)
    monkeypatch.setattr(models.Models, "decode", decode)
    monkeypatch.setattr(models.Models, "decode_pixels", decode_pixels)
    x_session, y_session = resampled()
    assert calls and set(calls) == {"in session"}, calls
    assert x_session.dtype == dtype and x_session.tobytes() == x_numpy.tobytes()
    assert np.array_equal(y_session, y_numpy)
