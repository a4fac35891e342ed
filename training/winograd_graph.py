"""The 28x28 paper decoder arranged as Winograd matrix products: ``decoder_cpu.onnx`` since 0.12.0.

Its first two transposed convolutions (7x7 → 10x10 and 10x10 → 13x13, 4x4 kernels, 95% of the
decoder's multiply-adds) are computed by Winograd's F(5, 4) as training's ``--conv winograd``
computes them (:mod:`.winograd`), but as a graph of plain ONNX products that onnxruntime runs: the
tile transforms along each side are one small constant matrix each
(:func:`~deepsmote.kernels.winograd.input_tiling`, :func:`~deepsmote.kernels.winograd.output_tiling`),
and the 64 products per layer one batched ``MatMul``. That is 3.1x and 2.8x fewer multiply-adds
in those layers, and on the 2-core EPYC Zen 3 1.65-1.98x the images/s of the plain graph, the
faster of the two earlier ones there.

Maps between the layers are laid out (H, W, N, C), so that each side's transform is a product
over the leading axis and the tiles of the batched product need one transpose each way: the rows
of the linear layer are permuted to emit channel-last pixels, as `decoder_graph.ExportDecoder`
does. Each layer's eval-mode BatchNorm is folded into its kernels and bias in float64, and the
transformed kernels ``G g G^T`` are computed in float64 and rounded once.

It computes the same function in float32 with other roundings, which grow with the activations:
outputs within 2e-5 of the direct decoder's in the tests (``tests/test_training_winograd_graph.py``)
and 4e-5 after 30 epochs at paper size, which the export checks against its own tolerance
(`export.WINOGRAD_TOLERANCE`). Which graph a bundle holds is fixed at export, so a bundle exported
before 0.12.0 keeps its bytes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from deepsmote.kernels.winograd import input_tiling, output_tiling, tile_counts, winograd_matrices
from torch import nn

from .folding import folded_batchnorm
from .model import Decoder
from .winograd import OUTPUTS_PER_TILE, applies_to

__all__ = ["WinogradConvTranspose", "WinogradDecoder"]


class WinogradConvTranspose(nn.Module):
    """A stride-1, unpadded transposed convolution, its eval-mode BatchNorm and a ReLU, by F(5, r).

    Parameters
    ----------
    conv : nn.ConvTranspose2d
        Square kernel of r <= `winograd.MAX_TAPS` taps (`winograd.applies_to`); its weights are copied.
    norm : nn.BatchNorm2d
        In eval mode, folded into the kernels.
    side : int
        The input map's side: the output's is ``side + r - 1``.
    """

    def __init__(self, conv: nn.ConvTranspose2d, norm: nn.BatchNorm2d, side: int) -> None:
        super().__init__()
        if not applies_to(conv):
            raise ValueError(f"Winograd computes stride-1 unpadded square transposed convolutions, got {conv}")
        c_in, c_out, taps, _ = conv.weight.shape
        matrices = winograd_matrices(OUTPUTS_PER_TILE, taps)
        self.out_side = side + taps - 1
        self.tile, self.tiles = matrices.tile, tile_counts(self.out_side, self.out_side, matrices.outputs)[0]
        self.c_in, self.c_out = c_in, c_out
        with torch.no_grad():
            scale, bias = folded_batchnorm(conv.bias, norm)
            # The full correlation with the flipped kernel, scaled per output channel: G g G^T.
            flipped = conv.weight.double().flip(2, 3) * scale.view(1, c_out, 1, 1)
            g = torch.from_numpy(matrices.g).double()
            kernels = torch.einsum("ar,ckrs,bs->abck", g, flipped, g).reshape(self.tile**2, c_in, c_out)
        self.register_buffer("kernels", kernels.float().contiguous())
        self.register_buffer("bias", bias.float())
        self.register_buffer("tiling_in", torch.from_numpy(input_tiling(side, matrices, taps - 1, self.out_side)))
        self.register_buffer("tiling_out", torch.from_numpy(output_tiling(matrices, self.out_side)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(side, side, N, c_in) float32 to (side + r - 1, side + r - 1, N, c_out), after the ReLU."""
        n, t, side = self.tile, self.tiles, x.shape[0]
        # B^T along H, then along W: (n t, n t, N c_in), tile sample (a, b) of tile (t_h, t_w).
        v = (self.tiling_in @ x.reshape(side, -1)).reshape(n * t, side, -1)
        v = self.tiling_in @ v
        # One (tiles x c_in) by (c_in x c_out) product per tile sample: rows (t_h, t_w, image).
        v = v.reshape(n, t, n, t, -1, self.c_in).permute(0, 2, 1, 3, 4, 5).reshape(n * n, -1, self.c_in)
        products = (v @ self.kernels).reshape(n, n, t, t, -1).permute(0, 2, 1, 3, 4).reshape(n * t, -1)
        # A^T along H, then along W, each placing and cropping the tiles' outputs.
        y = (self.tiling_out @ products).reshape(self.out_side, n * t, -1)
        y = (self.tiling_out @ y).reshape(self.out_side, self.out_side, -1, self.c_out)
        return torch.relu(y + self.bias)


class WinogradDecoder(nn.Module):
    """The paper ``decoder`` with its first two transposed convolutions as :class:`WinogradConvTranspose`.

    Parameters
    ----------
    decoder : Decoder
        In eval mode, of a model whose first two transposed convolutions `winograd.applies_to`
        (the 28x28 model: `fits`); its weights are copied, so later changes to it do not show here.
    """

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        if not self.fits(decoder):
            raise ValueError(
                "WinogradDecoder needs a paper decoder whose first two transposed convolutions are stride-1"
            )
        linear, deconv = decoder.fc[0], decoder.deconv
        self.start = decoder.start
        self.c_in = linear.out_features // self.start**2
        pixels = self.start**2
        with torch.no_grad():
            # Row c * pixels + p of the linear layer becomes row p * c_in + c: channel-last pixels.
            weight = linear.weight.view(self.c_in, pixels, -1).transpose(0, 1).reshape(pixels * self.c_in, -1)
            bias = linear.bias.view(self.c_in, pixels).t().reshape(-1)
        self.register_buffer("linear_weight", weight.clone())
        self.register_buffer("linear_bias", bias.clone())
        self.first = WinogradConvTranspose(deconv[0], deconv[1], self.start)
        self.second = WinogradConvTranspose(deconv[3], deconv[4], self.first.out_side)
        self.last = copy.deepcopy(deconv[6])

    @staticmethod
    def fits(decoder: nn.Module) -> bool:
        """Whether ``decoder`` is a paper decoder whose first two transposed convolutions Winograd computes."""
        return isinstance(decoder, Decoder) and applies_to(decoder.deconv[0]) and applies_to(decoder.deconv[3])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode, as :meth:`Decoder.forward`: (N, Z) float32 to (N, C, H, W) in [-1, 1]."""
        pixels = torch.relu(F.linear(z, self.linear_weight, self.linear_bias)).reshape(-1, self.start**2, self.c_in)
        x = pixels.transpose(0, 1).reshape(self.start, self.start, -1, self.c_in)
        x = self.second(self.first(x))
        return torch.tanh(self.last(x.permute(2, 3, 0, 1)))
