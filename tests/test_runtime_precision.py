"""Reduced-precision decoding, and the CUDA path where a GPU is present."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.bundle import decoder_graph, load_bundle, open_models
from deepsmote.runtime.errors import DeepSMOTEError

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((64, 16), dtype=np.float32)


def test_fp16_decoder_is_close_to_fp32(tiny_bundle, codes):
    bundle = load_bundle(tiny_bundle)
    fp32 = open_models(bundle, "cpu").decode(codes)
    fp16 = open_models(bundle, "cpu", precision="fp16").decode(codes)
    assert fp16.dtype == np.float32 and fp16.shape == fp32.shape
    assert 0 < np.abs(fp16 - fp32).max() < 2e-2


def test_fp16_sampling_is_deterministic(tiny_bundle, fmnist_mini):
    from deepsmote.runtime.readers import read_dataset

    data = read_dataset(fmnist_mini)
    runs = [
        DeepSMOTE(
            tiny_bundle, sampling_strategy="minority", random_state=0, provider="cpu", precision="fp16", batch_size=b
        ).fit_resample(data.images, data.labels)[0]
        for b in (7, 256)
    ]
    assert runs[0].tobytes() == runs[1].tobytes()


def test_unknown_precision(tiny_bundle):
    with pytest.raises(DeepSMOTEError, match="precision must be one of fp32, fp16, got 'int4'"):
        decoder_graph(load_bundle(tiny_bundle).decoder_bytes, "int4")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime's CUDAExecutionProvider")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_decodes_like_the_cpu(tiny_bundle, codes, precision):
    bundle = load_bundle(tiny_bundle)
    gpu = open_models(bundle, "cuda", precision=precision)
    assert gpu.provider == "CUDAExecutionProvider"
    cpu = open_models(bundle, "cpu").decode(codes)
    first, second, batched = gpu.decode(codes), gpu.decode(codes), gpu.decode(codes, batch_size=7)
    assert first.tobytes() == second.tobytes() == batched.tobytes()
    assert np.abs(first - cpu).max() < (1e-4 if precision == "fp32" else 2e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime's CUDAExecutionProvider")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_converts_pixels_on_the_device_with_the_bytes_of_numpy(tiny_bundle, codes, precision):
    from deepsmote.runtime.pixels import from_model

    gpu = open_models(load_bundle(tiny_bundle), "cuda", precision=precision)
    assert gpu.pixels is not None, "the pixel session is the default on CUDA"
    expected = from_model(gpu.decode(codes), grayscale_2d=False)
    for batch_size in (None, 7):
        assert gpu.decode_pixels(codes, batch_size).tobytes() == expected.tobytes()
