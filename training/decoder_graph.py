"""The decoder arranged for onnxruntime's CPU provider: exported as ``decoder_cpu.onnx``.

onnxruntime runs a ``ConvTranspose`` as one GEMM per image followed by a col2im. For the
decoder's first transposed convolution at paper size that GEMM is 4,096 x 512 x 49 (output
channels x kernel taps, input channels, input pixels): so few columns that the 8 MB of weights
are streamed once per image, and it ran at ~78% of the machine's GEMM rate. Here that layer is
one MatMul over all images of the batch, (N x 49) x 512 times 512 x 4,096, followed by
``Col2Im`` (``F.fold``), which ran at ~95%. Its input must have the pixels as rows, so the rows
of the linear layer before it are permuted to emit channel-last order, which costs nothing.
The BatchNorm after it is folded into its weights and bias. The later transposed convolutions
stay as they are: their input comes out of ``Col2Im`` channel-first, and transposing it cost
more than the larger GEMM saved (measured with ``benchmarks/model_flops.py``). onnxruntime has
no CUDA ``Col2Im``, so GPUs run the plain ``decoder.onnx``.

A ``resize-conv`` decoder has no transposed convolution; its stages are a nearest x2 upsampling
and a 3x3 convolution. Pixel (2i + a, 2j + b) of that stage's output sees only rows i - 1 + a,
i + a and columns j - 1 + b, j + b of the input map, with some of the nine taps summed where the
upsampling repeated a pixel: the stage is four 2x2 convolutions of the unscaled map, one per
output phase (a, b), interleaved (the sub-pixel view of resize-convolution; Shi et al., CVPR
2016; Odena et al., Distill 2016). That is 16 multiply-adds per input pixel and channel pair
instead of 36, and measured 1.4-2x the images/s of the plain graph in onnxruntime at 28x28x1,
64x64x3 and 128x128x3 (``benchmarks/generator_throughput.py``). The four phase kernels run as
one convolution with four times the output channels; BatchNorm is folded into it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .model import Decoder, ResizeConvDecoder

# Which input rows (columns) the 3x3 kernel's taps read, per output phase, after a nearest x2
# upsampling: phase 0 reads rows (i - 1, i) with taps (0, 1 + 2), phase 1 rows (i, i + 1) with (0 + 1, 2).
_PHASE_TAPS = torch.tensor(
    [[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64
)


class ExportDecoder(nn.Module):
    """``decoder`` with its linear layer and first transposed convolution as MatMul + fold.

    Parameters
    ----------
    decoder : Decoder
        In eval mode; its weights are copied, so later changes to it do not show here.
    """

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        linear = decoder.fc[0]
        deconv, norm = decoder.deconv[0], decoder.deconv[1]
        c_in, c_out, kernel, _ = deconv.weight.shape
        self.pixels = decoder.start * decoder.start
        self.c_in = c_in
        self.kernel_size = deconv.kernel_size
        self.stride = deconv.stride
        self.padding = deconv.padding
        side = (decoder.start - 1) * deconv.stride[0] - 2 * deconv.padding[0] + kernel
        self.output_size = (side, side)
        with torch.no_grad():
            # Row c * pixels + p of the linear layer becomes row p * c_in + c.
            weight = linear.weight.view(c_in, self.pixels, -1).transpose(0, 1).reshape(self.pixels * c_in, -1)
            bias = linear.bias.view(c_in, self.pixels).t().reshape(-1)
            # BatchNorm in eval mode is y = scale * x + shift per channel.
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            taps = (deconv.weight * scale.view(1, c_out, 1, 1)).reshape(c_in, c_out * kernel * kernel)
            deconv_bias = deconv.bias * scale + shift
        self.register_buffer("linear_weight", weight.clone())
        self.register_buffer("linear_bias", bias.clone())
        self.register_buffer("taps", taps.clone())
        self.register_buffer("deconv_bias", deconv_bias.view(1, c_out, 1, 1).clone())
        self.rest = decoder.deconv[2:]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode, as :meth:`Decoder.forward`.

        Parameters
        ----------
        z : torch.Tensor
            float32, shape (N, Z).

        Returns
        -------
        torch.Tensor
            float32, shape (N, C, H, W), values in [-1, 1].
        """
        pixels = torch.relu(F.linear(z, self.linear_weight, self.linear_bias)).unflatten(1, (self.pixels, self.c_in))
        columns = (pixels @ self.taps).transpose(1, 2)
        x = F.fold(columns, self.output_size, self.kernel_size, stride=self.stride, padding=self.padding)
        return self.rest(x + self.deconv_bias)


class PhaseConv(nn.Module):
    """A nearest x2 upsampling, a 3x3 convolution (padding 1) and an eval-mode BatchNorm as four 2x2 convolutions.

    Parameters
    ----------
    conv : nn.Conv2d
        3x3, stride 1, padding 1; its weights are copied.
    norm : nn.BatchNorm2d, optional
        In eval mode, folded into the kernels; None where the stage has none (the last).
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> None:
        super().__init__()
        with torch.no_grad():
            weight = conv.weight.double()
            c_out = weight.shape[0]
            bias = conv.bias.double() if conv.bias is not None else torch.zeros(c_out, dtype=torch.float64)
            if norm is not None:
                scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
                bias = (bias - norm.running_mean.double()) * scale + norm.bias.double()
                weight = weight * scale.view(-1, 1, 1, 1)
            # Kernel of phase (a, b): the taps each of its 2 x 2 input pixels collects, summed in
            # float64 and rounded once.
            kernels = [
                torch.einsum("ry,oiyx,cx->oirc", _PHASE_TAPS[a], weight, _PHASE_TAPS[b]) for a in (0, 1) for b in (0, 1)
            ]
        self.c_out = c_out
        self.register_buffer("kernels", torch.cat(kernels).float().contiguous())
        self.register_buffer("bias", bias.repeat(4).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, h, w) to (N, c_out, 2h, 2w), as the upsampling, convolution and BatchNorm."""
        height, width = x.shape[2], x.shape[3]
        # Output position (i + a, j + b) of phase (a, b) reads input rows i - 1 + a, i + a and
        # columns j - 1 + b, j + b (padding 1 on every side).
        phases = F.conv2d(x, self.kernels, self.bias, padding=1).split(self.c_out, dim=1)
        rows = [
            torch.stack([phases[2 * a + b][:, :, a : a + height, b : b + width] for b in (0, 1)], dim=-1)
            for a in (0, 1)
        ]
        # (N, c, h, 2, w, 2) -> (N, c, 2h, 2w): row 2i + a, column 2j + b.
        return torch.stack(rows, dim=3).flatten(4, 5).flatten(2, 3)


class PhaseDecoder(nn.Module):
    """``decoder`` with every upsampling and 3x3 convolution (and its BatchNorm) as a :class:`PhaseConv`.

    Parameters
    ----------
    decoder : ResizeConvDecoder
        In eval mode; its weights are copied, so later changes to it do not show here.
    """

    def __init__(self, decoder: ResizeConvDecoder) -> None:
        super().__init__()
        self.fc, self.map, self.out_size = copy.deepcopy(decoder.fc), decoder.map, decoder.out_size
        layers, stages = list(decoder.deconv), []
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, nn.Upsample):
                conv = layers.pop(0)
                norm = layers.pop(0) if layers and isinstance(layers[0], nn.BatchNorm2d) else None
                stages.append(PhaseConv(conv, norm))
            else:  # activations and residual blocks, at the upsampled size
                stages.append(copy.deepcopy(layer))
        self.stages = nn.Sequential(*stages)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode, as :meth:`ResizeConvDecoder.forward`: (N, Z) float32 to (N, C, H, W) in [-1, 1]."""
        x = self.stages(self.fc(z).unflatten(1, (-1, *self.map)))
        return torch.tanh(x[:, :, : self.out_size[0], : self.out_size[1]])


def cpu_decoder(decoder: nn.Module) -> nn.Module:
    """The arrangement of ``decoder`` (eval mode) that onnxruntime's CPU provider runs fastest."""
    if isinstance(decoder, Decoder):
        return ExportDecoder(decoder)
    if isinstance(decoder, ResizeConvDecoder):
        return PhaseDecoder(decoder)
    raise TypeError(f"no CPU arrangement for {type(decoder).__name__}")
