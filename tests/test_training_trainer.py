"""The training loop: checkpoints, logs, determinism, resumption and its refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.trainer import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    _batches,
    load_checkpoint,
    resolve_device,
    train,
)

TINY = TrainConfig(epochs=1, width=8, latent_dim=16, batch_size=32, arch="paper", loss="mse", device="cpu")


@pytest.fixture(scope="module")
def small(fmnist_mini: Path) -> LabelledImages:
    """Up to 15 images per class of the embedded subset: 125 images, 4 steps of 32."""
    data = read_dataset(fmnist_mini)
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:15] for c in range(len(data.classes))]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_tensors(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_one_epoch_writes_the_run_directory(small, tmp_path):
    files = train(small, TINY, tmp_path / "run")
    assert sorted(p.name for p in files.run_dir.iterdir()) == ["best.pt", "last.pt", "losses.jsonl", "losses.png"]
    checkpoint = torch.load(files.best, weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["config"] == {
        "epochs": 1,
        "width": 8,
        "latent_dim": 16,
        "arch": "paper",
        "res_blocks": 0,
        "loss": "mse",
        "batch_size": 32,
        "lr": 2e-4,
        "penalty": "reference",
        "penalty_weight": 1.0,
        "seed": 0,
        "device": "cpu",
        "precision": "fp32",
        "conv": "direct",
    }
    assert checkpoint["classes"] == list(small.classes)
    assert checkpoint["image_shape"] == [1, 28, 28]
    assert checkpoint["epoch"] == 1
    # Everything needed to rebuild and resume: the weights of the model the config describes, Adam's
    # moments after the epoch's 4 steps for every parameter, and both random states.
    encoder, decoder = build_models(ModelConfig((1, 28, 28), TINY.width, TINY.latent_dim))
    for name, model in (("encoder", encoder), ("decoder", decoder)):
        assert {k: v.shape for k, v in checkpoint[name].items()} == {k: v.shape for k, v in model.state_dict().items()}
        optimizer = checkpoint[f"{name}_optimizer"]
        assert optimizer["param_groups"][0]["lr"] == TINY.lr
        assert len(optimizer["state"]) == len(list(model.parameters()))
        assert all(int(state["step"]) == 4 for state in optimizer["state"].values())
    assert checkpoint["rng"]["shuffle"].dtype == torch.uint8 and "state" in checkpoint["rng"]["penalty"]
    images = checkpoint["verification_images"]
    assert images.dtype == torch.float32 and images.shape == (64, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1 and images.min() < 0 < images.max()
    entries = [json.loads(line) for line in files.log.read_text().splitlines()]
    assert [sorted(e) for e in entries] == [["epoch", "loss", "penalty", "reconstruction", "seconds"]]
    assert entries[0]["loss"] == pytest.approx(entries[0]["reconstruction"] + entries[0]["penalty"])
    assert checkpoint["history"] == entries
    assert files.plot.read_bytes().startswith(b"\x89PNG")


def test_same_seed_gives_same_weights(small, tmp_path):
    a = torch.load(train(small, TINY, tmp_path / "a").last, weights_only=True)
    b = torch.load(train(small, TINY, tmp_path / "b").last, weights_only=True)
    assert_same_tensors(a["encoder"], b["encoder"])
    assert_same_tensors(a["decoder"], b["decoder"])
    c = torch.load(train(small, replace(TINY, seed=1), tmp_path / "c").last, weights_only=True)
    assert not torch.equal(a["encoder"]["fc.weight"], c["encoder"]["fc.weight"])


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(small, tmp_path):
    straight = torch.load(train(small, replace(TINY, epochs=2), tmp_path / "straight").last, weights_only=True)
    train(small, TINY, tmp_path / "split")
    resumed = torch.load(train(small, replace(TINY, epochs=2), tmp_path / "split", resume=True).last, weights_only=True)
    for key in ("encoder", "decoder", "encoder_optimizer", "decoder_optimizer"):
        assert_same_tensors(straight[key], resumed[key])
    assert torch.equal(straight["rng"]["shuffle"], resumed["rng"]["shuffle"])
    assert straight["rng"]["penalty"] == resumed["rng"]["penalty"]
    assert [e["epoch"] for e in resumed["history"]] == [1, 2]
    assert [e["loss"] for e in resumed["history"]] == [e["loss"] for e in straight["history"]]
    log = (tmp_path / "split" / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def _parameters(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters of ``state`` (no BatchNorm statistics: the penalty's forward passes move those)."""
    names = {name for name, _ in model.named_parameters()}
    return {name: value for name, value in state.items() if name in names}


def test_a_penalty_weight_of_zero_trains_as_reconstruction_alone(small, tmp_path):
    # At λ = 0 the penalty is still drawn and computed, but adds nothing to any gradient, so the
    # weights are those of the run without a penalty, step for step.
    config = replace(TINY, epochs=2)
    weightless = torch.load(
        train(small, replace(config, penalty_weight=0.0), tmp_path / "zero").last, weights_only=True
    )
    plain = torch.load(train(small, replace(config, penalty="none"), tmp_path / "none").last, weights_only=True)
    encoder, decoder = build_models(ModelConfig(image_shape=(1, 28, 28), width=8, latent_dim=16, arch="paper"))
    assert_same_tensors(_parameters(weightless["encoder"], encoder), _parameters(plain["encoder"], encoder))
    assert_same_tensors(_parameters(weightless["decoder"], decoder), _parameters(plain["decoder"], decoder))
    for entry in weightless["history"]:
        assert entry["penalty"] > 0 and entry["loss"] == entry["reconstruction"]


def test_the_logged_loss_is_the_reconstruction_plus_the_weighted_penalty(small, tmp_path):
    weight = 2.5
    files = train(small, replace(TINY, epochs=2, penalty_weight=weight), tmp_path / "run")
    log = [json.loads(line) for line in files.log.read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    for entry in log:
        # Per-step float32 sums, averaged in float64: equal to rounding; λ = 1 would miss by 1.5 · penalty.
        assert entry["penalty"] > 1e-3
        assert entry["loss"] == pytest.approx(entry["reconstruction"] + weight * entry["penalty"], rel=1e-6)
    assert load_checkpoint(files.last)["config"]["penalty_weight"] == weight


def test_best_checkpoint_has_the_lowest_loss(small, tmp_path):
    files = train(small, replace(TINY, epochs=3, lr=1e-2), tmp_path / "run")
    history = load_checkpoint(files.last)["history"]
    best = load_checkpoint(files.best)
    losses = [e["loss"] for e in history]
    assert best["epoch"] == 1 + int(np.argmin(losses))
    assert best["best_loss"] == min(losses)


def test_a_run_directory_is_not_reused_silently(small, tmp_path):
    train(small, TINY, tmp_path / "run")
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(DeepSMOTEError, match="already holds a training run; pass --resume"):
        train(small, TINY, tmp_path / "run")
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    with pytest.raises(DeepSMOTEError, match=r"different config \(width 8 -> 16, latent_dim 16 -> 4\)"):
        train(small, replace(TINY, width=16, latent_dim=4), tmp_path / "run", resume=True)
    other = LabelledImages(small.images[::-1].copy(), small.labels[::-1].copy(), small.classes)
    with pytest.raises(DeepSMOTEError, match="trained on different data"):
        train(other, TINY, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    restarted = train(small, replace(TINY, seed=3), tmp_path / "run", restart=True)
    assert load_checkpoint(restarted.last)["config"]["seed"] == 3


def test_resume_needs_a_run(small, tmp_path):
    with pytest.raises(DeepSMOTEError, match="no run to resume"):
        train(small, TINY, tmp_path / "run", resume=True)
    assert not (tmp_path / "run").exists()


def test_a_class_of_one_image_is_refused(small, tmp_path):
    labels = small.labels.copy()
    labels[-1] = len(small.classes)
    lonely = LabelledImages(small.images, labels, (*small.classes, "lonely"))
    with pytest.raises(DeepSMOTEError, match="class 'lonely' has 1 image"):
        train(lonely, TINY, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": -1}, "batch_size must be a positive integer"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"penalty": "double"}, "penalty must be one of reference, paper, none"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
    ],
)
def test_bad_config_values(change, message):
    with pytest.raises(DeepSMOTEError, match=message):
        replace(TINY, **change)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(DeepSMOTEError, match=r"--device cuda: .* use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_a_last_batch_of_one_joins_the_previous():
    assert [len(b) for b in _batches(torch.arange(201), 100)] == [100, 101]
    assert [len(b) for b in _batches(torch.arange(202), 100)] == [100, 100, 2]
    assert [len(b) for b in _batches(torch.arange(7), 100)] == [7]


def test_foreign_checkpoints_are_refused(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepSMOTEError, match=r"garbage\.pt: not a deepsmote checkpoint"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(DeepSMOTEError, match=r"plain\.pt: not a deepsmote checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(DeepSMOTEError, match=r"missing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
