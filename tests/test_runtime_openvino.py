"""`--provider openvino`: onnxruntime-openvino's execution provider on the CPU.

The first tests run everywhere (the provider's name, its error where it is missing, its call
sizes). The rest need the provider, which comes with onnxruntime-openvino in place of
onnxruntime: `make test-openvino` runs this file in its own environment (CI does), and the main
environment skips them. They use the committed golden bundle, so that no torch is needed there.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, read_dataset
from deepsmote.runtime.bundle import (
    CPU_PROVIDER,
    OPENVINO_PROVIDER,
    default_decode_batch,
    default_encode_batch,
    load_bundle,
    open_models,
    provider_option,
    resolve_provider,
)
from deepsmote.runtime.errors import DeepSMOTEError
from golden import GOLDEN_BUNDLE
from helpers import run_main

HAS_OPENVINO = OPENVINO_PROVIDER in onnxruntime.get_available_providers()
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="needs onnxruntime-openvino (make test-openvino runs these in its own environment)"
)


def test_each_provider_name_maps_back_to_its_option():
    assert provider_option(OPENVINO_PROVIDER) == "openvino"
    assert provider_option("CUDAExecutionProvider") == "cuda"
    assert provider_option(CPU_PROVIDER) == "cpu"


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        (["CUDAExecutionProvider", OPENVINO_PROVIDER, CPU_PROVIDER], "CUDAExecutionProvider"),
        ([OPENVINO_PROVIDER, CPU_PROVIDER], CPU_PROVIDER),
        ([CPU_PROVIDER], CPU_PROVIDER),
    ],
)
def test_auto_takes_cuda_or_the_cpu_never_openvino(monkeypatch, available, chosen):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert resolve_provider("auto") == chosen


def test_a_missing_openvino_provider_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU_PROVIDER])
    with pytest.raises(
        DeepSMOTEError, match=r"OpenVINOExecutionProvider is not available \(install deepsmote\[openvino\]"
    ):
        resolve_provider("openvino")


def test_generate_without_openvino_exits_with_the_error_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU_PROVIDER])
    out = tmp_path / "out"
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--provider", "openvino", "--quiet"]
    code, _, err = run_main(args, capsys)
    assert code != 0
    assert "deepsmote[openvino]" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_openvino_calls_are_larger_and_capped_by_image_size():
    assert default_decode_batch(OPENVINO_PROVIDER, (1, 28, 28)) == 256
    assert default_decode_batch(OPENVINO_PROVIDER, (3, 128, 128)) == 5
    # The encoder's call sizes are the CPU's: both run in the host's memory.
    for shape in ((1, 28, 28), (3, 128, 128)):
        assert default_encode_batch(OPENVINO_PROVIDER, shape) == default_encode_batch(CPU_PROVIDER, shape)


@needs_openvino
def test_openvino_decodes_the_same_bytes_whatever_the_calls_and_threads():
    bundle = load_bundle(GOLDEN_BUNDLE)
    codes = np.random.default_rng(0).standard_normal((300, bundle.latent_dim), dtype=np.float32)
    models = open_models(bundle, "openvino", threads=2)
    assert models.provider == OPENVINO_PROVIDER
    reference = models.decode(codes)
    assert np.array_equal(models.decode(codes, batch_size=7), reference)
    assert np.array_equal(open_models(bundle, "openvino", threads=1).decode(codes, batch_size=64), reference)
    # Another provider rounds otherwise, within the export's tolerance of torch.
    cpu = open_models(bundle, "cpu").decode(codes)
    assert np.abs(reference - cpu).max() < 1e-4


@needs_openvino
def test_openvino_encodes_the_same_codes_whatever_the_threads():
    bundle = load_bundle(GOLDEN_BUNDLE)
    images = np.random.default_rng(1).uniform(-1, 1, (300, *bundle.image_shape)).astype(np.float32)
    one, two = (open_models(bundle, "openvino", threads=t).encode(images) for t in (1, 2))
    assert np.array_equal(one, two)
    assert np.abs(one - open_models(bundle, "cpu").encode(images)).max() < 1e-4


@needs_openvino
def test_sampler_on_openvino_gives_the_same_bytes_whatever_the_threads_and_calls():
    data = read_dataset(fmnist_mini())
    runs = [
        DeepSMOTE(
            GOLDEN_BUNDLE, sampling_strategy="minority", random_state=0, provider="openvino", n_threads=t, batch_size=b
        ).fit_resample(data.images, data.labels)
        for t, b in ((2, None), (1, 9))
    ]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


@needs_openvino
def test_generate_on_openvino_end_to_end_resumes_only_on_openvino(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "npz", "--quiet"]
    args += ["--strategy", '{"9": 300}', "--shard-size", "100", "--synthetic-only"]
    code, _, err = run_main([*args, "--provider", "openvino"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provider"] == OPENVINO_PROVIDER
    back = read_dataset(out)
    assert len(back.labels) == 300 - 4 and set(back.labels.tolist()) == {back.classes.index("9")}
    code, _, err = run_main([*args, "--provider", "cpu"], capsys)
    assert code != 0 and "differs in: provider" in err


@needs_openvino
def test_ray_on_openvino_writes_the_local_bytes(tmp_path, capsys):
    pytest.importorskip("ray", reason="needs ray (make test-openvino installs it)")
    args = [GOLDEN_BUNDLE, fmnist_mini(), "--strategy", "minority", "--format", "npz", "--shard-size", "100"]
    args += ["--provider", "openvino", "--quiet", "--synthetic-only"]
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert run_main(["generate", *args, "--out", local], capsys)[0] == 0
    code, _, err = run_main(["generate", *args, "--out", distributed, "--engine", "ray", "--workers", "2"], capsys)
    assert code == 0, err
    for shard in sorted(local.glob("*.npz")):
        assert shard.read_bytes() == (distributed / shard.name).read_bytes()
    assert len(list(local.glob("*.npz"))) == 4
