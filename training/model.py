"""The DeepSMOTE encoder and decoder, built from (image shape, width, latent size).

For 28x28 images the layers are exactly the authors' ``DeepSMOTE_MNIST.py`` (``docs/design.md`` §1): module
names ``conv``/``fc`` and ``fc``/``deconv`` match theirs, so their state dicts load. 32x32 uses
the common reconstruction the guide describes. Only these two sizes are supported: the strides
are fixed by the reference and do not generalise to other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from deepsmote.runtime.errors import DeepSMOTEError
from torch import nn

# (kernel, stride, padding) of the encoder's last conv and of the decoder's three transposed
# convs, per image side. The first three encoder convs are (4, 2, 1) for both sizes.
_ENCODER_LAST = {28: (4, 2, 1), 32: (4, 1, 0)}
_DECODER = {
    28: ((4, 1, 0), (4, 1, 0), (4, 2, 0)),
    32: ((4, 2, 1), (4, 2, 1), (3, 1, 1)),
}
SUPPORTED_SIDES = tuple(sorted(_DECODER))
_HALVING = (4, 2, 1)


@dataclass(frozen=True)
class ModelConfig:
    """What the encoder and decoder are built from.

    Attributes
    ----------
    image_shape : tuple of int
        (C, H, W) with C 1 or 3 and H = W in ``SUPPORTED_SIDES``.
    width : int
        Channels of the first conv; the others are 2, 4 and 8 times this (64 in the paper).
    latent_dim : int
        Size Z of a latent code (300 in the paper for 28x28x1).
    """

    image_shape: tuple[int, int, int]
    width: int = 64
    latent_dim: int = 300

    def __post_init__(self) -> None:
        channels, height, width = self.image_shape
        if channels not in (1, 3) or height != width or height not in SUPPORTED_SIDES:
            sides = " or ".join(f"{s}x{s}" for s in SUPPORTED_SIDES)
            raise DeepSMOTEError(
                f"image size {height}x{width}x{channels} is not supported; the DeepSMOTE architecture takes "
                f"{sides} images with 1 or 3 channels, so resize the images"
            )
        if self.width < 1 or self.latent_dim < 1:
            raise DeepSMOTEError(
                f"width and latent_dim must be positive integers, got {self.width} and {self.latent_dim}"
            )

    @property
    def side(self) -> int:
        """H (= W) of the images."""
        return self.image_shape[1]

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


def build_models(config: ModelConfig) -> tuple[Encoder, Decoder]:
    """A new encoder and decoder with PyTorch's default initialisation (the reference's)."""
    return Encoder(config), Decoder(config)
