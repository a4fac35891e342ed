"""The decoder arranged for onnxruntime's CPU provider: exported as ``decoder_cpu.onnx``.

The 28x28 ``paper`` decoder is arranged as Winograd products since 0.12.0
(:mod:`.winograd_graph`, faster than both the plain graph and the arrangement below on the
2-core EPYC Zen 3). The 32x32 one, whose transposed convolutions are strided, keeps ``ExportDecoder``:

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

A ``resize-conv`` decoder has no transposed convolution; each of its nearest x2 upsamplings and
the 3x3 convolution after it run as phase convolutions (:mod:`.phase`), one convolution per phase
(`phase_conv_per_phase`), with the BatchNorm after them folded in: 1.4-2x the images/s of the
plain graph in onnxruntime at 28x28x1, 64x64x3 and 128x128x3 (``benchmarks/generator_throughput.py``),
and 1.18-1.28x that of one convolution for all four phases at 64x64x3 and 128x128x3, width 64
(0.6.0; the same at width 16).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .folding import folded_batchnorm
from .model import Decoder, ResizeConvDecoder
from .phase import phase_conv, phase_conv_per_phase, phase_kernels
from .winograd_graph import WinogradDecoder


class ExportDecoder(nn.Module):
    """``decoder`` with its linear layer and first transposed convolution as MatMul + fold (32x32 paper models).

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


# Output channels from which a stage runs one convolution per phase. Below, as in the last stage
# (the image's 1 or 3 channels), a phase's product is too narrow: at 64x64x3 width 64 the last
# stage ran at 14 GFLOP/s per thread as four 3-channel convolutions and at ~45 as one of 12
# channels over the padded map, whose border costs little there (a 32x32 map).
PER_PHASE_MIN_CHANNELS = 16


class PhaseConv(nn.Module):
    """A nearest x2 upsampling, a 3x3 convolution (padding 1) and an eval-mode BatchNorm as phase convolutions.

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
            # Folded and summed in float64, rounded once.
            weight = conv.weight.double()
            bias = conv.bias.double() if conv.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
            if norm is not None:
                scale, bias = folded_batchnorm(bias, norm)
                weight = weight * scale.view(-1, 1, 1, 1)
            kernels, phase_bias = phase_kernels(weight, bias)
        self.per_phase = len(weight) >= PER_PHASE_MIN_CHANNELS
        if self.per_phase:
            # One buffer per phase, so that the graph holds each phase's kernel as its own initializer.
            for phase, (kernel, phase_b) in enumerate(zip(kernels.chunk(4), phase_bias.chunk(4), strict=True)):
                self.register_buffer(f"kernel_{phase}", kernel.float().contiguous())
                self.register_buffer(f"bias_{phase}", phase_b.float())
        else:
            self.register_buffer("kernels", kernels.float().contiguous())
            self.register_buffer("bias", phase_bias.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c_in, h, w) to (N, c_out, 2h, 2w), as the upsampling, convolution and BatchNorm."""
        if not self.per_phase:
            return phase_conv(x, self.kernels, self.bias)
        kernels = tuple(getattr(self, f"kernel_{phase}") for phase in range(4))
        biases = tuple(getattr(self, f"bias_{phase}") for phase in range(4))
        return phase_conv_per_phase(x, kernels, biases)


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
    """The arrangement of ``decoder`` (eval mode) that onnxruntime's CPU provider runs fastest: a
    `WinogradDecoder` where it `fits` (the 28x28 paper model), an `ExportDecoder` for other paper
    decoders, a `PhaseDecoder` for resize-conv's."""
    if WinogradDecoder.fits(decoder):
        return WinogradDecoder(decoder)
    if isinstance(decoder, Decoder):
        return ExportDecoder(decoder)
    if isinstance(decoder, ResizeConvDecoder):
        return PhaseDecoder(decoder)
    raise TypeError(f"no CPU arrangement for {type(decoder).__name__}")
