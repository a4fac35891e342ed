"""The DeepSMOTE encoders and decoders, built from (architecture, image shape, width, latent size).

Two architectures (``docs/design.md`` §1):

- ``paper``: for 28x28 images the layers are exactly the authors' ``DeepSMOTE_MNIST.py``: module
  names ``conv``/``fc`` and ``fc``/``deconv`` match theirs, so their state dicts load. 32x32 uses
  the common reconstruction the guide describes. Only these two sizes: the strides are fixed by
  the reference and do not generalise.
- ``resize-conv``: a family for any C in {1, 3} and H, W each in 16..256. The encoder halves the
  image ``depth`` times (3x3 convs, stride 2, so a side n becomes ceil(n / 2)); the decoder
  grows it back by nearest-neighbour x2 upsampling followed by a 3x3 conv, which covers every
  output pixel with the same number of kernel taps and so draws no checkerboard (Odena et al.,
  "Deconvolution and Checkerboard Artifacts", Distill 2016), then crops to H x W. The depth is
  the most halvings that leave the shorter side at least 4 pixels; widths double per stage from
  ``width`` up to 8 x ``width``. ``res_blocks`` residual blocks (two 3x3 convs) follow each
  stage but the decoder's last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from deepsmote.runtime.errors import DeepSMOTEError
from torch import nn

from .phase import phase_conv, phase_kernels

# (kernel, stride, padding) of the encoder's last conv and of the decoder's three transposed
# convs, per image side. The first three encoder convs are (4, 2, 1) for both sizes.
_ENCODER_LAST = {28: (4, 2, 1), 32: (4, 1, 0)}
_DECODER = {
    28: ((4, 1, 0), (4, 1, 0), (4, 2, 0)),
    32: ((4, 2, 1), (4, 2, 1), (3, 1, 1)),
}
SUPPORTED_SIDES = tuple(sorted(_DECODER))
_HALVING = (4, 2, 1)
ARCHITECTURES: tuple[str, ...] = ("paper", "resize-conv")
# The family's image sides, and the smallest side its encoder halves down to.
MIN_SIDE, MAX_SIDE = 16, 256
_MIN_CODE_SIDE = 4


@dataclass(frozen=True)
class ModelConfig:
    """What the encoder and decoder are built from.

    Attributes
    ----------
    image_shape : tuple of int
        (C, H, W) with C 1 or 3; for ``paper`` H = W in ``SUPPORTED_SIDES``, for ``resize-conv``
        H and W each in ``MIN_SIDE..MAX_SIDE``.
    width : int
        Channels of the first conv; the others are 2, 4 and 8 times this (64 in the paper).
    latent_dim : int
        Size Z of a latent code (300 in the paper for 28x28x1).
    arch : {'paper', 'resize-conv'}
    res_blocks : int
        Residual blocks after each stage (``resize-conv`` only).
    """

    image_shape: tuple[int, int, int]
    width: int = 64
    latent_dim: int = 300
    arch: str = "paper"
    res_blocks: int = 0

    def __post_init__(self) -> None:
        channels, height, width = self.image_shape
        if self.arch not in ARCHITECTURES:
            raise DeepSMOTEError(f"`arch` must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        named = f"image size {height}x{width}x{channels} is not supported"
        if self.arch == "paper" and (channels not in (1, 3) or height != width or height not in SUPPORTED_SIDES):
            sides = " or ".join(f"{s}x{s}" for s in SUPPORTED_SIDES)
            raise DeepSMOTEError(
                f"{named}; the paper's DeepSMOTE architecture takes {sides} images with 1 or 3 channels, "
                f"so resize the images (`resize`) or use `arch` resize-conv (sides {MIN_SIDE}..{MAX_SIDE})"
            )
        if self.arch != "paper" and (
            channels not in (1, 3) or not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE)
        ):
            raise DeepSMOTEError(
                f"{named}; `arch` {self.arch} takes 1 or 3 channels and sides {MIN_SIDE}..{MAX_SIDE}, "
                "so resize the images (`resize` HxW)"
            )
        if self.width < 1 or self.latent_dim < 1:
            raise DeepSMOTEError(
                f"width and latent_dim must be positive integers, got {self.width} and {self.latent_dim}"
            )
        if isinstance(self.res_blocks, bool) or not isinstance(self.res_blocks, int) or self.res_blocks < 0:
            raise DeepSMOTEError(f"`res_blocks` must be an integer >= 0, got {self.res_blocks!r}")

    @property
    def side(self) -> int:
        """H (= W) of the images."""
        return self.image_shape[1]

    @property
    def depth(self) -> int:
        """``resize-conv``: halvings of the image, the most that keep the shorter side >= 4."""
        shorter, depth = min(self.image_shape[1:]), 0
        while -(-shorter // 2) >= _MIN_CODE_SIDE:
            shorter, depth = -(-shorter // 2), depth + 1
        return depth

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """``resize-conv``: channels after each encoder stage, ``width`` doubling up to 8x."""
        return tuple(self.width * 2 ** min(stage, 3) for stage in range(self.depth))

    @property
    def code_map(self) -> tuple[int, int]:
        """``resize-conv``: (h, w) of the encoder's last map and the decoder's first."""
        height, width = self.image_shape[1:]
        for _ in range(self.depth):
            height, width = -(-height // 2), -(-width // 2)
        return height, width

    @property
    def decoder_start(self) -> int:
        """Side of the decoder's first feature map: the encoder's after its second conv (7 or 8)."""
        return _conv_out(_conv_out(self.side, *_HALVING), *_HALVING)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Encoder(nn.Module):
    """Images to latent codes.

    Four strided convs (no BatchNorm on the first, LeakyReLU(0.2) after each) bring the image to
    a 1x1 map of ``8 * width`` channels; a linear layer maps it to the code.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels, w = config.image_shape[0], config.width
        self.conv = nn.Sequential(
            nn.Conv2d(channels, w, *_HALVING, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, w * 2, *_HALVING, bias=False),
            nn.BatchNorm2d(w * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w * 2, w * 4, *_HALVING, bias=False),
            nn.BatchNorm2d(w * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w * 4, w * 8, *_ENCODER_LAST[config.side], bias=False),
            nn.BatchNorm2d(w * 8),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.fc = nn.Linear(w * 8, config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode.

        Parameters
        ----------
        x : torch.Tensor
            float32, shape (N, C, H, W), values in [-1, 1].

        Returns
        -------
        torch.Tensor
            float32, shape (N, Z).
        """
        # flatten(1), not the reference's squeeze(): squeeze drops the batch axis when N = 1.
        return self.fc(self.conv(x).flatten(1))


class Decoder(nn.Module):
    """Latent codes to images.

    A linear layer and ReLU give a ``decoder_start``-sided map of ``8 * width`` channels; three
    transposed convs (BatchNorm and ReLU after the first two) grow it to the image; Tanh.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels, w = config.image_shape[0], config.width
        self.start = config.decoder_start
        self.fc = nn.Sequential(nn.Linear(config.latent_dim, w * 8 * self.start * self.start), nn.ReLU())
        first, second, last = _DECODER[config.side]
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(w * 8, w * 4, *first),
            nn.BatchNorm2d(w * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(w * 4, w * 2, *second),
            nn.BatchNorm2d(w * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(w * 2, channels, *last),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode.

        Parameters
        ----------
        z : torch.Tensor
            float32, shape (N, Z).

        Returns
        -------
        torch.Tensor
            float32, shape (N, C, H, W), values in [-1, 1].
        """
        x = self.fc(z)
        # unflatten keeps the batch axis symbolic in the exported graph, unlike view(-1, ...).
        return self.deconv(x.unflatten(1, (-1, self.start, self.start)))


class ResidualBlock(nn.Module):
    """``act(x + bn(conv(act(bn(conv(x))))))`` with 3x3 convs that keep the channels (He et al. 2016)."""

    def __init__(self, channels: int, activation: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            activation,
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, c, h, w) to the same shape."""
        return self.activation(x + self.body(x))


class ResizeConvEncoder(nn.Module):
    """Images to codes: ``depth`` stride-2 3x3 convs (BatchNorm but on the first, LeakyReLU(0.2)), flatten, linear."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = config.image_shape[0]
        for stage, c_out in enumerate(config.stage_widths):
            layers.append(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=stage == 0))
            if stage:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            layers += [ResidualBlock(c_out, nn.LeakyReLU(0.2)) for _ in range(config.res_blocks)]
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        height, width = config.code_map
        self.fc = nn.Linear(c_in * height * width, config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] to (N, Z)."""
        return self.fc(self.conv(x).flatten(1))


class ResizeConvDecoder(nn.Module):
    """Codes to images: linear to the code map, then per stage nearest x2 and a 3x3 conv; crop; Tanh."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = config.stage_widths
        self.map = config.code_map
        self.out_size = config.image_shape[1:]
        self.fc = nn.Sequential(nn.Linear(config.latent_dim, widths[-1] * self.map[0] * self.map[1]), nn.ReLU())
        layers: list[nn.Module] = []
        for stage in reversed(range(len(widths))):
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            if stage == 0:
                layers.append(nn.Conv2d(widths[0], config.image_shape[0], 3, 1, 1))
                break
            c_out = widths[stage - 1]
            layers += [nn.Conv2d(widths[stage], c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            layers += [ResidualBlock(c_out, nn.ReLU()) for _ in range(config.res_blocks)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, Z) to (N, C, H, W) in [-1, 1].

        In training, each upsampling and its convolution run as phase convolutions
        (:mod:`deepsmote.training.phase`): the same function and gradients, measured 2.5-3.7x
        faster forward and backward on the CPU at 28x28x1, 64x64x3 and 128x128x3. In eval mode
        they run as written, which is what ``decoder.onnx`` holds.
        """
        x = self.fc(z).unflatten(1, (-1, *self.map))
        layers = iter(self.deconv)
        for layer in layers:
            if self.training and isinstance(layer, nn.Upsample):
                conv = next(layers)
                x = phase_conv(x, *phase_kernels(conv.weight, conv.bias))
            else:
                x = layer(x)
        # The map is a multiple of 2^depth >= the image; the overhang is cut at the far edges.
        return torch.tanh(x[:, :, : self.out_size[0], : self.out_size[1]])


def build_models(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """A new encoder and decoder with PyTorch's default initialisation (the reference's)."""
    if config.arch == "paper":
        return Encoder(config), Decoder(config)
    return ResizeConvEncoder(config), ResizeConvDecoder(config)
