"""Training's Winograd transposed convolutions (`--conv winograd`): the same layers in fewer multiply-adds.

A transposed convolution of stride 1 and no padding is the full correlation of the map with the
flipped kernel, which Winograd's F(5, 4) computes in 8x8 tiles (:mod:`deepsmote.kernels.winograd`):
64 matrix products of (tiles x input channels) by (input x output channels) in place of the
direct form's 16 taps over every input pixel. For the paper's 28x28 decoder, whose first two
transposed convolutions (7x7 → 10x10 and 10x10 → 13x13, 4x4 kernels) hold 95% of its
multiply-adds, that is 3.1x and 2.8x fewer. The tile transforms run in numba on the CPU, the
products in torch, and autograd takes the backward pass through both: the inputs' and the
weights' gradients are Winograd products too.

It computes the same function in float32 with other roundings: outputs and gradients within about
1e-5 of the largest value of the direct convolution's (``tests/test_training_winograd.py``), where
the direct form's own reorderings (channels-last, the thread count) move them by about 1e-6. The
layers, their weights and the exported graphs are unchanged; only training calls them this way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from deepsmote.kernels.winograd import (
    WinogradMatrices,
    input_transform,
    input_transform_adjoint,
    output_transform,
    output_transform_adjoint,
    winograd_matrices,
)
from deepsmote.runtime.errors import DeepSMOTEError, InvalidInputError
from torch import nn

from .model import ModelConfig, build_models

ConvAlgorithm = Literal["direct", "winograd"]
CONV_ALGORITHMS: tuple[str, ...] = ("direct", "winograd")
# F(5, r): for r = 4 an 8x8 tile, the largest whose points (0, ±1, ±2, ±1/2, ∞) keep float32 near
# the direct form; it covers the paper decoder's 10x10 output in 2x2 tiles with nothing wasted.
OUTPUTS_PER_TILE, MAX_TAPS = 5, 4


class _InputTiles(torch.autograd.Function):
    """Map (N, H, W, C) → its transformed tiles (n*n, tiles, C), padded by r - 1 for a full correlation."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, matrices: WinogradMatrices, pad: int, out_hw: tuple[int, int]
    ) -> torch.Tensor:
        ctx.matrices, ctx.pad, ctx.out_hw, ctx.x_shape = matrices, pad, out_hw, tuple(x.shape)
        return torch.from_numpy(input_transform(_numpy(x), matrices, pad, out_hw))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        dx = input_transform_adjoint(_numpy(grad), ctx.matrices, ctx.pad, ctx.out_hw, ctx.x_shape)
        return torch.from_numpy(dx), None, None, None


class _OutputTiles(torch.autograd.Function):
    """Products per tile (n*n, tiles, K) → the output map (N, Ho, Wo, K)."""

    @staticmethod
    def forward(
        ctx: Any, products: torch.Tensor, matrices: WinogradMatrices, n_images: int, out_hw: tuple[int, int]
    ) -> torch.Tensor:
        ctx.matrices = matrices
        return torch.from_numpy(output_transform(_numpy(products), matrices, n_images, out_hw))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return torch.from_numpy(output_transform_adjoint(_numpy(grad), ctx.matrices)), None, None, None


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy view of ``t`` (a copy only where it is not laid out so)."""
    return t.detach().contiguous().numpy()


def applies_to(layer: nn.Module) -> bool:
    """Whether ``layer`` is a transposed convolution this module computes: stride 1, no padding, a
    square kernel of at most ``MAX_TAPS`` taps a side."""
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and layer.stride == (1, 1)
        and layer.padding == (0, 0)
        and layer.output_padding == (0, 0)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.kernel_size[0] == layer.kernel_size[1] <= MAX_TAPS
    )


@functools.cache
def _kernel_transform(taps: int) -> torch.Tensor:
    """G ⊗ G of F(5, ``taps``), float32 (n*n, taps*taps): made once, not on every call. Read-only."""
    matrices = winograd_matrices(OUTPUTS_PER_TILE, taps)
    return torch.from_numpy(np.kron(matrices.g, matrices.g))


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias)`` (stride 1, no padding) by Winograd's F(5, r).

    Parameters
    ----------
    x : torch.Tensor
        float32 on the CPU, shape (N, C, H, W), any layout.
    weight : torch.Tensor
        float32, shape (C, K, r, r), r <= ``MAX_TAPS``.
    bias : torch.Tensor or None
        float32, shape (K,).

    Returns
    -------
    torch.Tensor
        float32, shape (N, K, H + r - 1, W + r - 1), channels-last; differentiable in all three.
    """
    n_images, channels, height, width = x.shape
    taps = weight.shape[2]
    matrices = winograd_matrices(OUTPUTS_PER_TILE, taps)
    out_hw = (height + taps - 1, width + taps - 1)
    tiles = _InputTiles.apply(x.permute(0, 2, 3, 1), matrices, taps - 1, out_hw)
    # G g G^T for every (input, output) channel pair of the flipped kernel, as one product.
    kernels = (_kernel_transform(taps) @ weight.flip(2, 3).reshape(-1, taps * taps).T).view(
        matrices.tile**2, channels, -1
    )
    output = _OutputTiles.apply(torch.bmm(tiles, kernels), matrices, n_images, out_hw).permute(0, 3, 1, 2)
    return output if bias is None else output + bias.view(1, -1, 1, 1)


def check_conv_algorithm(algorithm: str, model: ModelConfig, precision: str, device: torch.device) -> None:
    """Refuse a ``conv`` that training cannot run for this model, precision and device.

    Raises
    ------
    DeepSMOTEError
        If ``algorithm`` is unknown, or ``winograd`` is asked for off the CPU, in mixed precision,
        or for a decoder without stride-1 transposed convolutions (any but the 28x28 ``paper`` one).
    """
    if algorithm not in CONV_ALGORITHMS:
        raise InvalidInputError(f"`conv` must be one of {', '.join(CONV_ALGORITHMS)}, got {algorithm!r}")
    if algorithm == "direct":
        return
    if device.type != "cpu" or precision != "fp32":
        raise DeepSMOTEError(
            f"`conv` winograd runs in fp32 on the CPU, not in {precision} on {device.type}; "
            "use `device` cpu with `precision` fp32, or `conv` direct"
        )
    with torch.device("meta"):
        _, decoder = build_models(model)
    if not any(applies_to(layer) for layer in decoder.modules()):
        raise InvalidInputError(
            "`conv` winograd computes stride-1 transposed convolutions, which only the 28x28 `arch` paper "
            "decoder has; use `conv` direct"
        )


def with_conv_algorithm(decoder: nn.Module, algorithm: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The decoder as training calls it (``algorithm`` checked by :func:`check_conv_algorithm`): itself
    for ``direct``; for ``winograd``, its stride-1 transposed convolutions computed by
    :func:`conv_transpose2d` during each call.
    """
    if algorithm == "direct":
        return decoder
    layers = [layer for layer in decoder.modules() if applies_to(layer)]

    def run(codes: torch.Tensor) -> torch.Tensor:
        # The layers' own forward is put back after each call, so the modules (and an export) stay as built.
        for layer in layers:
            layer.forward = lambda x, layer=layer: conv_transpose2d(x, layer.weight, layer.bias)
        try:
            return decoder(codes)
        finally:
            for layer in layers:
                del layer.forward

    return run
