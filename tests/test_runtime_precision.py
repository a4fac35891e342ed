"""Reduced-precision decoding, and the CUDA path where a GPU is present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.bundle import FP16_DECODER_FILE, decoder_graph, load_bundle, open_models
from deepsmote.runtime.errors import DeepSMOTEError
from helpers import without_graphs

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


def without_fp16_graph(tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle as exported before 0.9.0: no decoder_fp16.onnx."""
    return without_graphs(tiny_bundle, tmp_path / "old", FP16_DECODER_FILE)


def test_fp16_runs_the_bundles_fp16_graph_with_the_bytes_of_the_conversion_at_run_time(tiny_bundle, codes, tmp_path):
    shipped = open_models(load_bundle(tiny_bundle), "cpu", precision="fp16")
    converted = open_models(load_bundle(without_fp16_graph(tiny_bundle, tmp_path)), "cpu", precision="fp16")
    assert (shipped.decoder_file, converted.decoder_file) == (FP16_DECODER_FILE, "decoder.onnx")
    assert shipped.decode(codes).tobytes() == converted.decode(codes).tobytes()


def test_a_fp16_job_from_a_bundle_with_its_fp16_graph_needs_no_onnx(tiny_bundle, fmnist_mini, tmp_path):
    # onnx's import and the conversion took 1.2-2.8 s at paper size on every open_models.
    script = (
        "import sys\n"
        "from deepsmote.runtime.bundle import load_bundle, open_models\n"
        "import numpy as np\n"
        "models = open_models(load_bundle(sys.argv[1]), 'cpu', precision='fp16')\n"
        "models.decode(np.zeros((2, 16), np.float32))\n"
        "print(models.decoder_file, 'onnx' in sys.modules)\n"
    )
    for bundle, expected in (
        (tiny_bundle, "decoder_fp16.onnx False"),
        (without_fp16_graph(tiny_bundle, tmp_path), "decoder.onnx True"),
    ):
        run = subprocess.run([sys.executable, "-c", script, str(bundle)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == expected


def test_fp16_without_onnx_runs_a_new_bundle_and_names_the_fix_for_an_old_one(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert open_models(load_bundle(tiny_bundle), "cpu", precision="fp16").decoder_file == FP16_DECODER_FILE
    old = load_bundle(without_fp16_graph(tiny_bundle, tmp_path))
    with pytest.raises(
        DeepSMOTEError, match=r"^`precision` fp16 with a bundle exported before 0\.9\.0 .*export the bundle again$"
    ):
        open_models(old, "cpu", precision="fp16")


def test_unknown_precision(tiny_bundle):
    with pytest.raises(ValueError, match="`precision` must be one of fp32, fp16, got 'int4'"):
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
