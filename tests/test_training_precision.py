"""Training precision: fp32 computes what the plain loop computes; bf16 runs and is recorded; refusals."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training import precision as precision_module
from deepsmote.training.export import export_bundle
from deepsmote.training.loss import class_members, deepsmote_loss
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.trainer import TrainConfig, load_checkpoint, memory_format, train
from helpers import run_main

TINY = TrainConfig(epochs=1, width=8, latent_dim=16, batch_size=32, arch="paper", loss="mse", device="cpu")
needs_bf16 = pytest.mark.skipif(
    not precision_module.cpu_has_bf16(), reason="this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)"
)


@pytest.fixture(scope="module")
def small(fmnist_mini: Path) -> LabelledImages:
    """Up to 15 images per class of the embedded subset: 125 images, 4 steps of 32."""
    data = read_dataset(fmnist_mini)
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:15] for c in range(len(data.classes))]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def plain_loop(data: LabelledImages, config: TrainConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Weights after ``config.epochs`` epochs of the loop as first written: torch's default Adam,
    each step's losses read with ``.item()``, no autocast (125 images: no last batch of one); in
    channels-last, the layout the trainer keeps on the CPU (its function is tested below)."""
    torch.manual_seed(config.seed)
    encoder, decoder = build_models(ModelConfig(data.image_shape, config.width, config.latent_dim, config.arch))
    for module in (encoder, decoder):
        module.to(memory_format=torch.channels_last)
    optimizers = [torch.optim.Adam(m.parameters(), lr=config.lr) for m in (encoder, decoder)]
    shuffle = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images = torch.from_numpy(to_model(data.images)).contiguous(memory_format=torch.channels_last)
    members = class_members(data.labels, len(data.classes))
    for _ in range(config.epochs):
        for index in torch.split(torch.randperm(len(images), generator=shuffle), config.batch_size):
            for optimizer in optimizers:
                optimizer.zero_grad()
            terms = deepsmote_loss(
                encoder, decoder, images[index], config.penalty, 1.0, images, members, config.batch_size, rng
            )
            terms.total.backward()
            for optimizer in optimizers:
                optimizer.step()
            assert np.isfinite([terms.total.item(), terms.reconstruction.item(), terms.penalty.item()]).all()
    return {"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}


def test_fp32_training_computes_the_plain_loop_bit_for_bit(small, tmp_path):
    checkpoint = load_checkpoint(train(small, replace(TINY, epochs=2), tmp_path / "run").last)
    expected = plain_loop(small, replace(TINY, epochs=2))
    for name in ("encoder", "decoder"):
        for key, value in expected[name].items():
            assert torch.equal(checkpoint[name][key], value), f"{name}.{key}"
    assert checkpoint["config"]["precision"] == "fp32"


def test_the_cpu_trains_in_channels_last(small, tmp_path):
    checkpoint = load_checkpoint(train(small, TINY, tmp_path / "run").last)
    convolutions = [v for m in ("encoder", "decoder") for v in checkpoint[m].values() if v.dim() == 4]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    assert memory_format(torch.device("cpu")) == torch.channels_last


@pytest.mark.parametrize(
    ("shape", "arch", "loss"), [((1, 28, 28), "paper", "mse"), ((3, 20, 24), "resize-conv", "l1+ssim")]
)
def test_channels_last_computes_the_same_step_as_channels_first(shape, arch, loss):
    # One step's losses and gradients from the same weights and draws: only the order of the sums moves.
    torch.manual_seed(0)
    models = build_models(ModelConfig(shape, width=8, latent_dim=16, arch=arch))
    images = torch.rand(40, *shape) * 2 - 1
    members = class_members(np.arange(40) % 4, 4)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        encoder, decoder = (copy.deepcopy(m).to(memory_format=layout) for m in models)
        x = images.contiguous(memory_format=layout)
        rng = np.random.default_rng(0)
        terms = deepsmote_loss(encoder, decoder, x[:16], "reference", 1.0, x, members, 16, rng, loss)
        terms.total.backward()
        grads = [p.grad for m in (encoder, decoder) for p in m.parameters()]
        results.append((terms.total.detach(), grads))
    (loss_first, grads_first), (loss_last, grads_last) = results
    torch.testing.assert_close(loss_last, loss_first, rtol=1e-5, atol=1e-6)
    # Compared as a whole, not element by element: the float32 sums of two orders differ most
    # where a gradient is near 0, and a ReLU input within rounding of 0 passes its gradient in one
    # order and not the other (measured: up to 5e-3 of a gradient's norm against float64, for
    # either layout, at some widths). A layout mixed up would be off by the whole norm. The
    # biases before a BatchNorm have a gradient of 0 in exact arithmetic: 1e-6 absolute for those.
    for last, first in zip(grads_last, grads_first, strict=True):
        assert torch.linalg.vector_norm(last - first) <= 1e-2 * torch.linalg.vector_norm(first) + 1e-6


@needs_bf16
def test_bf16_trains_resumes_and_is_recorded_in_the_manifest(small, tmp_path):
    bf16 = replace(TINY, precision="bf16")
    straight = load_checkpoint(train(small, replace(bf16, epochs=2), tmp_path / "straight").last)
    assert all(np.isfinite(e["loss"]) and e["loss"] > 0 for e in straight["history"])
    fp32 = load_checkpoint(train(small, replace(TINY, epochs=2), tmp_path / "fp32").last)
    # The weights stay float32, and bfloat16 products round otherwise than float32 ones.
    assert all(v.dtype == torch.float32 for v in straight["decoder"].values() if v.is_floating_point())
    assert not torch.equal(straight["decoder"]["fc.0.weight"], fp32["decoder"]["fc.0.weight"])

    train(small, bf16, tmp_path / "split")
    resumed = load_checkpoint(train(small, replace(bf16, epochs=2), tmp_path / "split", resume=True).last)
    for name in ("encoder", "decoder"):
        for key, value in straight[name].items():
            assert torch.equal(resumed[name][key], value), f"{name}.{key}"

    manifest = export_bundle(tmp_path / "split" / "best.pt", tmp_path / "bundle")
    assert manifest.training.config["precision"] == "bf16"
    assert json.loads((tmp_path / "bundle" / "deepsmote.json").read_text())["training"]["config"]["precision"] == "bf16"


@pytest.mark.parametrize(("amx", "encoder_dtype"), [(False, torch.bfloat16), (True, torch.float32)])
def test_bf16_autocasts_the_encoder_except_on_amx_cpus(monkeypatch, amx, encoder_dtype):
    monkeypatch.setattr(precision_module, "cpu_has_amx", lambda: amx)
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=8, latent_dim=16, arch="paper"))
    cpu = torch.device("cpu")
    encode, decode = precision_module.in_training_precision(encoder, decoder, "bf16", cpu)
    codes = encode(torch.rand(4, 1, 28, 28))
    assert codes.dtype == encoder_dtype
    # The decoder computes in bfloat16 (its last product, then tanh) whatever its input.
    assert decode(codes.float()).dtype == torch.bfloat16
    assert precision_module.in_training_precision(encoder, decoder, "fp32", cpu) == (encoder, decoder)


@needs_bf16
def test_the_amx_rule_reaches_the_trainer(small, tmp_path, monkeypatch):
    # The encoder in bfloat16 (no AMX) rounds otherwise than in float32 (AMX): other weights.
    encoders = []
    for amx in (False, True):
        monkeypatch.setattr(precision_module, "cpu_has_amx", lambda amx=amx: amx)
        run = train(small, replace(TINY, precision="bf16"), tmp_path / f"amx-{amx}")
        encoders.append(load_checkpoint(run.last)["encoder"])
    assert not torch.equal(encoders[0]["fc.weight"], encoders[1]["fc.weight"])


@needs_bf16
def test_cli_trains_in_bf16(fmnist_mini, tmp_path, capsys):
    tiny = ["--epochs", "1", "--width", "8", "--latent-dim", "16", "--arch", "paper", "--device", "cpu"]
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", *tiny, "--precision", "bf16"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "deepsmote.json").read_text())["training"]["config"]["precision"] == "bf16"


def test_resuming_in_another_precision_is_refused(small, tmp_path, monkeypatch):
    train(small, TINY, tmp_path / "run")
    # The refusal to mix precisions, not the CPU check that comes first where bf16 is missing.
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    with pytest.raises(DeepSMOTEError, match="precision 'fp32' -> 'bf16'"):
        train(small, replace(TINY, epochs=2, precision="bf16"), tmp_path / "run", resume=True)


def test_unrunnable_precisions_are_refused_before_anything_is_written(
    small, tmp_path, monkeypatch, fmnist_mini, capsys
):
    with pytest.raises(DeepSMOTEError, match="must be one of fp32, bf16, fp16"):
        replace(TINY, precision="fp8")
    with pytest.raises(DeepSMOTEError, match="fp16 runs on CUDA GPUs only"):
        train(small, replace(TINY, precision="fp16"), tmp_path / "fp16")
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(DeepSMOTEError, match="this CPU has no bfloat16 instructions"):
        train(small, replace(TINY, precision="bf16"), tmp_path / "bf16")
    assert not (tmp_path / "fp16").exists() and not (tmp_path / "bf16").exists()

    code, _, err = run_main(
        ["train", fmnist_mini, "--out", tmp_path / "b", "--device", "cpu", "--precision", "fp16"], capsys
    )
    assert code == 1 and err.strip().splitlines() == [
        "Error: --precision fp16 runs on CUDA GPUs only; use --precision bf16 on a CPU with bfloat16 instructions, "
        "or fp32"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
