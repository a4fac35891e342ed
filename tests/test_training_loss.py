"""The loss: reconstruction plus the reference penalty, and what the penalty trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deepsmote.training.loss import class_members, cyclic_shift, deepsmote_loss, distance, shift_penalty, ssim
from deepsmote.training.model import ModelConfig, build_models
from torch import nn
from torch.nn import functional as F

SIZES = (30, 5, 2)  # images per class
BATCH = 10


class RecordingEncoder(nn.Module):
    """Codes are the flattened images; remembers the id (first pixel) of each image it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, 0, 0, 0].clone())
        return x.flatten(1)


class RecordingDecoder(nn.Module):
    """Undoes the flatten, times a learnable scale; remembers the id of each code it decodes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(z[:, 0].detach().clone())
        return self.scale * z.unflatten(1, (1, 2, 2))


@pytest.fixture
def id_images() -> tuple[torch.Tensor, list[np.ndarray]]:
    """Image i is filled with the value i, so any image tells which one it is."""
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    images = torch.arange(len(labels), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 2, 2).contiguous()
    return images, class_members(labels, len(SIZES))


def test_cyclic_shift_is_the_references_index():
    # The reference builds np.append(np.arange(1, n), 0).
    for n in (1, 2, 5):
        assert cyclic_shift(n).tolist() == [*range(1, n), 0]


def test_penalty_draws_one_class_without_replacement(id_images):
    images, members = id_images
    encoder, decoder = RecordingEncoder(), RecordingDecoder()
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(300):
        shift_penalty(encoder, decoder, images, members, BATCH, rng)
        ids = encoder.seen[-1].long().numpy()
        owner = next(c for c, m in enumerate(members) if ids[0] in m)
        assert set(ids) <= set(members[owner]), "images of one class only"
        assert len(ids) == len(set(ids)) == min(SIZES[owner], BATCH)
        drawn.append(owner)
    # Uniform over classes, not over images: the 2-image class is drawn as often as the others.
    counts = np.bincount(drawn, minlength=len(SIZES))
    assert all(70 <= c <= 130 for c in counts), counts


def test_penalty_shifts_codes_and_targets_alike(id_images):
    images, members = id_images
    encoder, decoder = RecordingEncoder(), RecordingDecoder()
    penalty = shift_penalty(encoder, decoder, images, members, BATCH, np.random.default_rng(1))
    encoded, decoded = encoder.seen[-1], decoder.seen[-1]
    # The decoder gets the code of image i + 1 at position i (cyclically) ...
    assert decoded.tolist() == torch.roll(encoded, -1).tolist()
    assert decoded.tolist() == encoded[cyclic_shift(len(encoded))].tolist()
    # ... and is compared with image i + 1: an identity autoencoder has no penalty, whereas
    # shifting the codes alone would leave one.
    assert penalty.item() == 0
    assert F.mse_loss(images[encoded.long()][cyclic_shift(len(encoded))], images[encoded.long()]).item() > 0


def test_penalty_value_by_hand():
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=8, latent_dim=16))
    encoder.eval()
    decoder.eval()
    labels = np.repeat(np.arange(3), (12, 4, 3))
    images = torch.rand(len(labels), 1, 28, 28) * 2 - 1
    members = class_members(labels, 3)
    got = shift_penalty(encoder, decoder, images, members, 5, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    group = members[rng.integers(3)]
    chosen = rng.choice(group, size=min(len(group), 5), replace=False)
    x = images[chosen]
    shift = [*range(1, len(chosen)), 0]
    with torch.no_grad():
        expected = F.mse_loss(decoder(encoder(x)[shift]), x[shift])
    assert torch.allclose(got, expected)


def test_penalty_trains_only_the_decoder():
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=8, latent_dim=16))
    encoder.train()  # as in the reference: the gradient is stopped, the mode is not changed
    decoder.train()
    labels = np.repeat(np.arange(2), (8, 6))
    images = torch.rand(len(labels), 1, 28, 28) * 2 - 1
    penalty = shift_penalty(encoder, decoder, images, class_members(labels, 2), 100, np.random.default_rng(0))
    penalty.backward()
    for name, p in encoder.named_parameters():
        assert p.grad is None or not p.grad.any(), f"encoder {name} got a gradient"
    for name, p in decoder.named_parameters():
        assert p.grad is not None and p.grad.any(), f"decoder {name} got no gradient"


def test_loss_combines_reconstruction_and_weighted_penalty():
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=8, latent_dim=16))
    encoder.eval()  # eval so that the two calls below see the same BatchNorm statistics
    decoder.eval()
    labels = np.repeat(np.arange(2), (8, 6))
    images = torch.rand(len(labels), 1, 28, 28) * 2 - 1
    members = class_members(labels, 2)
    batch = images[:5]
    terms = deepsmote_loss(encoder, decoder, batch, "reference", 2.5, images, members, 100, np.random.default_rng(3))
    alone = shift_penalty(encoder, decoder, images, members, 100, np.random.default_rng(3))
    assert torch.allclose(terms.reconstruction, F.mse_loss(decoder(encoder(batch)), batch))
    assert torch.allclose(terms.penalty, alone)
    assert torch.allclose(terms.total, terms.reconstruction + 2.5 * terms.penalty)


def test_no_penalty_is_plain_reconstruction():
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=8, latent_dim=16))
    batch = torch.rand(4, 1, 28, 28) * 2 - 1
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    terms = deepsmote_loss(encoder, decoder, batch, "none", 1.0, batch, [np.arange(4)], 100, rng)
    assert terms.penalty.item() == 0
    assert torch.equal(terms.total.detach(), terms.reconstruction)
    assert rng.bit_generator.state == state, "'none' draws nothing"
    terms.total.backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_paper_penalty_compares_with_the_unshifted_images(id_images):
    images, members = id_images
    encoder, decoder = RecordingEncoder(), RecordingDecoder()
    penalty = shift_penalty(encoder, decoder, images, members, BATCH, np.random.default_rng(1), "paper")
    encoded, decoded = encoder.seen[-1], decoder.seen[-1]
    assert decoded.tolist() == torch.roll(encoded, -1).tolist()
    # The identity autoencoder decodes image i + 1 at position i, compared with image i.
    x = images[encoded.long()]
    assert penalty.item() > 0
    assert torch.allclose(penalty, F.mse_loss(x[cyclic_shift(len(x))], x))


def numpy_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of Wang et al. 2004 written directly: every 11x11 window inside the image, Gaussian weights."""
    offsets = np.arange(11) - 5.0
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    weights = np.outer(g, g) / np.outer(g, g).sum()
    x, y = (x.astype(np.float64) + 1) / 2, (y.astype(np.float64) + 1) / 2
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for n, c in np.ndindex(x.shape[:2]):
        wx = np.lib.stride_tricks.sliding_window_view(x[n, c], (11, 11))
        wy = np.lib.stride_tricks.sliding_window_view(y[n, c], (11, 11))
        mx, my = (wx * weights).sum((-2, -1)), (wy * weights).sum((-2, -1))
        vx = (((wx - mx[..., None, None]) ** 2) * weights).sum((-2, -1))
        vy = (((wy - my[..., None, None]) ** 2) * weights).sum((-2, -1))
        cov = ((wx - mx[..., None, None]) * (wy - my[..., None, None]) * weights).sum((-2, -1))
        values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 3, 20, 24)])
def test_ssim_matches_a_numpy_reference(shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    # A smoothed, noisier copy: neither identical nor unrelated, so every term matters.
    y = np.clip(0.6 * x + 0.3 * np.roll(x, 1, axis=-1) + rng.normal(0, 0.2, shape), -1, 1).astype(np.float32)
    got = ssim(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert got == pytest.approx(numpy_ssim(x, y), abs=1e-5)
    assert 0.05 < got < 0.95
    assert ssim(torch.from_numpy(x), torch.from_numpy(x)).item() == pytest.approx(1.0, abs=1e-5)


def test_losses_are_their_formulas():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32))
    assert torch.allclose(distance(x, y, "mse"), ((x - y) ** 2).mean())
    assert torch.allclose(distance(x, y, "l1"), (x - y).abs().mean())
    expected = 0.84 * (1 - numpy_ssim(x.numpy(), y.numpy())) + 0.16 * (x - y).abs().mean().item()
    assert distance(x, y, "l1+ssim").item() == pytest.approx(expected, abs=1e-5)


def test_loss_choice_reaches_reconstruction_and_penalty():
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig((1, 16, 16), width=4, latent_dim=8, arch="resize-conv"))
    encoder.eval()
    decoder.eval()
    labels = np.repeat(np.arange(2), (6, 4))
    images = torch.rand(len(labels), 1, 16, 16) * 2 - 1
    members = class_members(labels, 2)
    batch = images[:4]
    terms = deepsmote_loss(encoder, decoder, batch, "paper", 1.0, images, members, 100, np.random.default_rng(3), "l1")
    alone = shift_penalty(encoder, decoder, images, members, 100, np.random.default_rng(3), "paper", "l1")
    with torch.no_grad():
        assert torch.allclose(terms.reconstruction, F.l1_loss(decoder(encoder(batch)), batch))
    assert torch.allclose(terms.penalty, alone)
