"""Conversion between stored pixels and the model's float32 NCHW tensors in [-1, 1].

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import numpy as np


def to_model(images: np.ndarray) -> np.ndarray:
    """uint8 images to model input.

    Parameters
    ----------
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).

    Returns
    -------
    np.ndarray
        float32, shape (N, C, H, W), values in [-1, 1].
    """
    x = images[:, None] if images.ndim == 3 else np.moveaxis(images, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def from_model(x: np.ndarray, grayscale_2d: bool = True) -> np.ndarray:
    """Model output to uint8 images.

    Parameters
    ----------
    x : np.ndarray
        float32, shape (N, C, H, W), values nominally in [-1, 1] (clipped).
    grayscale_2d : bool
        Return (N, H, W) for one channel instead of (N, H, W, 1).

    Returns
    -------
    np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    """
    # In place on one copy: the arithmetic of rint((clip(x) + 1) * 127.5) without its three temporaries.
    scaled = np.clip(x, -1.0, 1.0)
    scaled += np.float32(1.0)
    scaled *= np.float32(127.5)
    np.rint(scaled, out=scaled)
    images = np.moveaxis(scaled.astype(np.uint8), 1, 3)
    if grayscale_2d and images.shape[3] == 1:
        images = images[..., 0]
    return np.ascontiguousarray(images)
