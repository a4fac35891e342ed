"""The DeepSMOTE steps between a class's images and its synthetic images.

encode (onnxruntime) → exact k-NN within the class → SMOTE interpolation of drawn pairs →
decode (onnxruntime); the two middle steps run in numpy for small work and in numba for large.
Each step takes and returns plain numpy arrays.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from deepsmote.kernels import interpolate, kneighbors

from .errors import DeepSMOTEError
from .models import Models
from .plan import Draws

# Encoding always runs in batches of this size, whatever the caller's batch size, so the
# codes (and everything drawn from them) do not depend on it.
ENCODE_BATCH = 256


@dataclass(frozen=True)
class ClassLatents:
    """A class's codes and each code's nearest neighbours within the class.

    Attributes
    ----------
    codes : np.ndarray
        float32, shape (n, Z).
    neighbors : np.ndarray
        int64, shape (n, k_eff), indices into ``codes``, nearest first, self excluded.
    """

    codes: np.ndarray
    neighbors: np.ndarray

    @property
    def n_neighbors(self) -> int:
        """k_eff: neighbours per code."""
        return int(self.neighbors.shape[1])


def fit_class(models: Models, images: np.ndarray, k_neighbors: int, class_name: str) -> ClassLatents:
    """Encode a class and find each code's k nearest neighbours.

    Parameters
    ----------
    models : Models
    images : np.ndarray
        float32, shape (n, C, H, W), the class's real images in [-1, 1].
    k_neighbors : int
        Neighbours to keep; a class with ``n <= k`` keeps ``n - 1`` and warns.
    class_name : str
        For messages.

    Raises
    ------
    DeepSMOTEError
        If the class has fewer than two samples, or the encoder yields NaN or inf.
    """
    if len(images) < 2:
        raise DeepSMOTEError(
            f"class '{class_name}' has {len(images)} sample(s); SMOTE needs at least 2 to interpolate. "
            "Add samples or leave the class out of the sampling strategy"
        )
    codes = models.encode(images, batch_size=ENCODE_BATCH)
    if not np.isfinite(codes).all():
        raise DeepSMOTEError(f"the encoder produced NaN or inf codes for class '{class_name}'; the bundle is broken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neighbors, _ = kneighbors(codes, k_neighbors)
    if caught:
        warnings.warn(
            f"class '{class_name}' has {len(images)} samples: using {neighbors.shape[1]} neighbours instead of "
            f"{k_neighbors}",
            stacklevel=2,
        )
    return ClassLatents(codes, neighbors)


def synthesize(models: Models, latents: ClassLatents, draws: Draws, batch_size: int) -> np.ndarray:
    """Decode the interpolated codes of one shard.

    Returns
    -------
    np.ndarray
        float32, shape (m, C, H, W), values in [-1, 1].
    """
    z = interpolate(latents.codes, latents.neighbors, draws.base, draws.slot, draws.gap)
    return models.decode(z, batch_size=batch_size)
