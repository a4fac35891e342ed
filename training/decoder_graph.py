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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import Decoder


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
