"""The caller's image layout and dtype, kept from input to output of the Python API.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError
from .pixels import from_model, to_model


@dataclass(frozen=True)
class ImageLayout:
    """How a caller's X maps onto the model's (N, C, H, W) in [-1, 1].

    Integer images are read as 0..255; float images as 0..1. X may be (N, H, W) for one
    channel, (N, H, W, C), torch's (N, C, H, W), or flattened (N, H*W*C) in H, W, C order; images
    come back in the layout given.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    image_shape: tuple[int, int, int]

    @classmethod
    def of(cls, x: np.ndarray, image_shape: tuple[int, int, int]) -> ImageLayout:
        """Check ``x`` against the model's (C, H, W) and record its layout."""
        channels, height, width = image_shape
        accepted = {
            (height, width) if channels == 1 else None,
            (height, width, channels),
            (channels, height, width),
            (height * width * channels,),
        }
        if x.ndim < 2 or tuple(x.shape[1:]) not in accepted:
            raise InvalidInputError(
                f"X has shape {x.shape}; the bundle's images are {channels}x{height}x{width}, so X must be "
                f"(N, {height}, {width}, {channels}){f' or (N, {height}, {width})' if channels == 1 else ''}, "
                f"torch's (N, {channels}, {height}, {width}) or flattened (N, {height * width * channels})"
            )
        if x.dtype.kind not in "uif":
            raise InvalidInputError(f"X must hold integer (0..255) or float (0..1) pixels, got dtype {x.dtype}")
        return cls(tuple(x.shape[1:]), x.dtype, image_shape)

    @property
    def channels_first(self) -> bool:
        """Whether X is torch's (N, C, H, W): its images are transposed on the way in and out."""
        channels, height, width = self.image_shape
        return self.shape == (channels, height, width) and self.shape != (height, width, channels)

    def _nhwc(self, x: np.ndarray) -> np.ndarray:
        channels, height, width = self.image_shape
        return x.transpose(0, 2, 3, 1) if self.channels_first else x.reshape(len(x), height, width, channels)

    @property
    def scale(self) -> float:
        """Pixel value that maps to 1.0 in the model."""
        return 255.0 if self.takes_pixels else 1.0

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """X (n, *shape) to float32 (n, C, H, W) in [-1, 1]."""
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < 0 or hi > self.scale or not np.isfinite([lo, hi]).all():
            raise InvalidInputError(
                f"X values must lie in [0, {self.scale:g}] for dtype {self.dtype}, got [{lo:g}, {hi:g}]"
            )
        nhwc = self._nhwc(x)
        if self.takes_pixels:
            # The same arithmetic as the CLI, so both give the same bytes.
            return to_model(nhwc.astype(np.uint8))
        return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(2.0) - np.float32(1.0)

    @property
    def takes_pixels(self) -> bool:
        """Whether the caller's dtype holds 0..255 pixels, which `from_pixels` fills."""
        return self.dtype.kind in "ui"

    def from_model(self, x: np.ndarray) -> np.ndarray:
        """float32 (n, C, H, W) in [-1, 1] back to the caller's shape and dtype."""
        if self.takes_pixels:
            return self.from_pixels(from_model(x, grayscale_2d=False))
        out = ((np.clip(x, -1.0, 1.0) + np.float32(1.0)) * np.float32(0.5)).astype(self.dtype)
        if self.channels_first:
            return np.ascontiguousarray(out)
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1).reshape(len(x), *self.shape))

    def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, C) pixels in the caller's shape and integer dtype (`takes_pixels`)."""
        pixels = pixels.astype(self.dtype, copy=False)
        if self.channels_first:
            return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
        return np.ascontiguousarray(pixels.reshape(len(pixels), *self.shape))
