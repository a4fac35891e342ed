"""DeepSMOTE's training loss: reconstruction plus a penalty.

``loss = D(decode(encode(x)), x) + weight * penalty``, with the distance ``D`` chosen by ``loss``:

- ``mse``: the paper's mean squared error;
- ``l1``: mean absolute error, which blurs less (Zhao et al., "Loss Functions for Image
  Restoration with Neural Networks", IEEE TCI 2017);
- ``l1+ssim``: ``0.84 * (1 - SSIM) + 0.16 * L1``, their mix (with single-scale SSIM: a
  Gaussian window of 11 pixels, sigma 1.5, on pixels scaled to [0, 1], K1 = 0.01, K2 = 0.03, the
  window kept inside the image; Wang et al., IEEE TIP 2004).

The penalty (``docs/design.md`` §1) draws one class at random, encodes up to a batch of its images
with the gradient stopped, shifts the codes by one position (cyclic) and decodes them, so it
trains only the decoder, on same-class images:

- ``reference`` is what the authors' ``DeepSMOTE_MNIST.py`` computes: the decoded shifted codes
  compared with the images shifted the same way (so each image is compared with its own code's
  decoding);
- ``paper`` is the penalty as the paper writes it: the decoded shifted codes compared with the
  unshifted images (each image with its neighbour's code's decoding);
- ``none`` is the ablation without it.

The penalty uses the same distance ``D``; with ``mse`` it is the authors' term exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

Penalty = Literal["reference", "paper", "none"]
PENALTIES: tuple[str, ...] = ("reference", "paper", "none")
Loss = Literal["mse", "l1", "l1+ssim"]
LOSSES: tuple[str, ...] = ("mse", "l1", "l1+ssim")
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# Zhao et al.'s weight of the SSIM term in their L1 mix.
SSIM_SHARE = 0.84


@dataclass(frozen=True)
class LossTerms:
    """One step's loss and its parts.

    Attributes
    ----------
    total : torch.Tensor
        Scalar to back-propagate: ``reconstruction + weight * penalty``.
    reconstruction, penalty : torch.Tensor
        Scalars, detached; ``penalty`` is 0 for ``'none'``.
    """

    total: torch.Tensor
    reconstruction: torch.Tensor
    penalty: torch.Tensor


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian, float32, shape (size,)."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


@functools.cache
def window_band(size: int) -> torch.Tensor:
    """The valid 1-D Gaussian filter of a signal of ``size`` samples as a matrix, float32 (size - 10, size).

    Row i holds :func:`gaussian_window` at columns i .. i + 10: ``band @ v`` filters ``v``. Cached:
    callers must not change it.
    """
    window = gaussian_window()
    band = torch.zeros(size - SSIM_WINDOW + 1, size)
    for i in range(len(band)):
        band[i, i : i + SSIM_WINDOW] = window
    return band


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of two image batches in [-1, 1].

    Parameters
    ----------
    x, y : torch.Tensor
        float32, shape (N, C, H, W), values in [-1, 1], H and W at least :data:`SSIM_WINDOW`.

    Returns
    -------
    torch.Tensor
        Scalar: the SSIM map averaged over every valid window position, channel and image.
    """
    # Separable filtering with the windows inside the image only, as two products with banded
    # matrices: one GEMM over every row of every channel, then a batched one over the columns.
    # oneDNN's depthwise convolution with an 11-tap kernel ran at ~0.6 GFLOP/s on the CPU, 40% of
    # a training step at 128x128x3; the products do 12x the multiply-adds at GEMM speed.
    down, across = window_band(x.shape[2]).to(x), window_band(x.shape[3]).to(x)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return down @ (t @ across.T)

    x, y = (x + 1) / 2, (y + 1) / 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.mean()


def distance(output: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
    """The reconstruction distance ``D`` named by ``loss`` (see the module docstring), a scalar.

    Computed in float32 whatever the precision of ``output`` and any autocast around the call:
    SSIM's variances are differences of close numbers, which 16 bits would cancel away.
    """
    with torch.autocast(output.device.type, enabled=False):
        return _distance(output.float(), target.float(), loss)


def _distance(output: torch.Tensor, target: torch.Tensor, loss: Loss) -> torch.Tensor:
    if loss == "mse":
        return F.mse_loss(output, target)
    if loss == "l1":
        return F.l1_loss(output, target)
    return SSIM_SHARE * (1 - ssim(output, target)) + (1 - SSIM_SHARE) * F.l1_loss(output, target)


def class_members(labels: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Indices of each class's images.

    Parameters
    ----------
    labels : np.ndarray
        int, shape (N,), values in ``range(n_classes)``.

    Returns
    -------
    list of np.ndarray
        ``n_classes`` int64 arrays of indices into the training set.
    """
    return [np.flatnonzero(labels == c) for c in range(n_classes)]


def cyclic_shift(n: int) -> torch.Tensor:
    """The reference's index ``[1, 2, ..., n-1, 0]``: position i takes item i + 1 (mod n)."""
    return torch.roll(torch.arange(n), -1)


def shift_penalty(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    decoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    members: list[np.ndarray],
    batch_size: int,
    rng: np.random.Generator,
    penalty: Penalty = "reference",
    loss: Loss = "mse",
) -> torch.Tensor:
    """The penalty for one step: ``reference`` (the authors' code) or ``paper`` (the paper's formula).

    Parameters
    ----------
    encoder, decoder : callable
        The models, in whatever mode the caller set (the reference runs both in train mode here,
        so the encoder's BatchNorm statistics also see this class batch), or functions calling
        them, such as the models under autocast
        (:func:`deepsmote.training.precision.in_training_precision`).
    images : torch.Tensor
        float32, shape (N, C, H, W): the whole training set, not the current batch.
    members : list of np.ndarray
        Indices of each class's images (:func:`class_members`).
    batch_size : int
        At most this many images of the drawn class are used.
    rng : np.random.Generator
        Draws the class and the images.
    penalty : {'reference', 'paper'}
        Compare with the images shifted like the codes (``reference``) or unshifted (``paper``).
    loss : {'mse', 'l1', 'l1+ssim'}
        The distance.

    Returns
    -------
    torch.Tensor
        Scalar; its gradient reaches the decoder only.
    """
    chosen_class = members[rng.integers(len(members))]
    chosen = rng.choice(chosen_class, size=min(len(chosen_class), batch_size), replace=False)
    x = images[torch.from_numpy(chosen).to(images.device)]
    # The reference stops the gradient by going through numpy; no_grad does the same.
    with torch.no_grad():
        z = encoder(x)
    shift = cyclic_shift(len(chosen)).to(images.device)
    return distance(decoder(z[shift]), x[shift] if penalty == "reference" else x, loss)


def deepsmote_loss(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    decoder: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    penalty: Penalty,
    weight: float,
    images: torch.Tensor,
    members: list[np.ndarray],
    batch_size: int,
    rng: np.random.Generator,
    loss: Loss = "mse",
) -> LossTerms:
    """Loss of one training step.

    Parameters
    ----------
    batch : torch.Tensor
        float32, shape (B, C, H, W), values in [-1, 1].
    penalty : {'reference', 'paper', 'none'}
    weight : float
        λ, the penalty's weight.
    images, members, batch_size, rng
        The whole training set, its class indices, the configured batch size (not the size of
        a short last batch) and the penalty's generator (see :func:`shift_penalty`); unused
        for ``'none'``.
    loss : {'mse', 'l1', 'l1+ssim'}
        The distance of the reconstruction and of the penalty.

    Returns
    -------
    LossTerms
    """
    reconstruction = distance(decoder(encoder(batch)), batch, loss)
    if penalty == "none":
        return LossTerms(reconstruction, reconstruction.detach(), torch.zeros((), device=batch.device))
    term = shift_penalty(encoder, decoder, images, members, batch_size, rng, penalty, loss)
    return LossTerms(reconstruction + weight * term, reconstruction.detach(), term.detach())
