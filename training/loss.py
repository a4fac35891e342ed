"""DeepSMOTE's training loss: reconstruction plus the reference code's penalty.

``loss = MSE(decode(encode(x)), x) + weight * penalty``. The ``reference`` penalty is what the
authors' ``DeepSMOTE_MNIST.py`` computes each step (``docs/design.md`` §1): one class drawn at random, up to
a batch of its images encoded with the gradient stopped, the codes shifted by one position
(cyclic), decoded, and compared with the images shifted the same way. It therefore trains only
the decoder, on same-class images. ``none`` is the ablation without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

Penalty = Literal["reference", "none"]
PENALTIES: tuple[str, ...] = ("reference", "none")


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


def reference_penalty(
    encoder: nn.Module,
    decoder: nn.Module,
    images: torch.Tensor,
    members: list[np.ndarray],
    batch_size: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The authors' penalty for one step.

    Parameters
    ----------
    encoder, decoder : nn.Module
        In whatever mode the caller set; the reference runs both in train mode here, so the
        encoder's BatchNorm statistics also see this class batch.
    images : torch.Tensor
        float32, shape (N, C, H, W): the whole training set, not the current batch.
    members : list of np.ndarray
        Indices of each class's images (:func:`class_members`).
    batch_size : int
        At most this many images of the drawn class are used.
    rng : np.random.Generator
        Draws the class and the images.

    Returns
    -------
    torch.Tensor
        Scalar MSE; its gradient reaches the decoder only.
    """
    chosen_class = members[rng.integers(len(members))]
    chosen = rng.choice(chosen_class, size=min(len(chosen_class), batch_size), replace=False)
    x = images[torch.from_numpy(chosen).to(images.device)]
    # The reference stops the gradient by going through numpy; no_grad does the same.
    with torch.no_grad():
        z = encoder(x)
    shift = cyclic_shift(len(chosen)).to(images.device)
    return F.mse_loss(decoder(z[shift]), x[shift])


def deepsmote_loss(
    encoder: nn.Module,
    decoder: nn.Module,
    batch: torch.Tensor,
    penalty: Penalty,
    weight: float,
    images: torch.Tensor,
    members: list[np.ndarray],
    batch_size: int,
    rng: np.random.Generator,
) -> LossTerms:
    """Loss of one training step.

    Parameters
    ----------
    batch : torch.Tensor
        float32, shape (B, C, H, W), values in [-1, 1].
    penalty : {'reference', 'none'}
    weight : float
        λ, the penalty's weight.
    images, members, batch_size, rng
        The whole training set, its class indices, the configured batch size (not the size of
        a short last batch) and the penalty's generator (see :func:`reference_penalty`); unused
        for ``'none'``.

    Returns
    -------
    LossTerms
    """
    reconstruction = F.mse_loss(decoder(encoder(batch)), batch)
    if penalty == "none":
        return LossTerms(reconstruction, reconstruction.detach(), torch.zeros((), device=batch.device))
    term = reference_penalty(encoder, decoder, images, members, batch_size, rng)
    return LossTerms(reconstruction + weight * term, reconstruction.detach(), term.detach())
