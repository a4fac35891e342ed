"""Phase convolutions, both forms, compute nearest x2 upsampling + 3x3 convolution exactly (float64), with gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.phase import phase_conv, phase_conv_per_phase, phase_kernels


def upsample_then_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)


def one_convolution(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return phase_conv(x, *phase_kernels(weight, bias))


def one_convolution_per_phase(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    kernels, biases = phase_kernels(weight, bias)
    return phase_conv_per_phase(x, tuple(kernels.chunk(4)), None if biases is None else tuple(biases.chunk(4)))


@pytest.mark.parametrize("form", [one_convolution, one_convolution_per_phase])
@pytest.mark.parametrize(("h", "w", "with_bias"), [(4, 4, True), (5, 3, False), (1, 7, True)])
def test_phase_conv_is_upsampling_then_conv_with_the_same_gradients(h, w, with_bias, form):
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, h, w, generator=rng, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 5, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, generator=rng, dtype=torch.float64, requires_grad=True) if with_bias else None
    upstream = torch.randn(3, 7, 2 * h, 2 * w, generator=rng, dtype=torch.float64)
    leaves = [x, weight] + ([bias] if with_bias else [])

    expected = upsample_then_conv(x, weight, bias)
    got = form(x, weight, bias)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for want, have in zip(
        torch.autograd.grad(expected, leaves, upstream), torch.autograd.grad(got, leaves, upstream), strict=True
    ):
        torch.testing.assert_close(have, want, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("shape", "res_blocks"), [((1, 28, 28), 0), ((3, 48, 40), 1)])
def test_the_training_decoder_computes_the_layers_as_written(shape, res_blocks):
    torch.manual_seed(0)
    _, decoder = build_models(ModelConfig(shape, width=4, latent_dim=8, arch="resize-conv", res_blocks=res_blocks))
    decoder = decoder.double().train()
    z = torch.randn(6, 8, dtype=torch.float64)

    def as_written() -> torch.Tensor:
        x = decoder.deconv(decoder.fc(z).unflatten(1, (-1, *decoder.map)))
        return torch.tanh(x[:, :, : shape[1], : shape[2]])

    parameters = list(decoder.parameters())
    expected = as_written()
    want = torch.autograd.grad(expected.square().mean(), parameters)
    upsamplings = []
    for module in decoder.modules():
        if isinstance(module, torch.nn.Upsample):
            module.register_forward_hook(lambda *_: upsamplings.append(1))
    got = decoder(z)
    # Training takes the phase path: no upsampled map is made; eval mode runs the layers as written.
    assert not upsamplings
    with torch.no_grad():
        decoder.eval()(z)
    assert upsamplings
    have = torch.autograd.grad(got.square().mean(), parameters)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    for g, w in zip(have, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
