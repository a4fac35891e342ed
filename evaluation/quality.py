"""Sample-quality measures between real and synthetic feature vectors, in numpy only.

- Fréchet distance between the Gaussians fitted to two sets (the FID formula, in whatever
  feature space the caller embeds the images in):
  ``|mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2})``. The trace of the matrix root
  is computed as the sum of the roots of the eigenvalues of ``S_1^{1/2} S_2 S_1^{1/2}``, which is
  symmetric positive semi-definite, so no complex ``sqrtm`` is needed and singular covariances
  (fewer samples than dimensions) are fine.
- Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019): each set's manifold is the
  union of balls around its points, each with the radius to the point's k-th nearest neighbour in
  its own set; precision is the fraction of synthetic points inside the real manifold, recall the
  fraction of real points inside the synthetic one (k = 3 as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_K = 3
_CHUNK = 1024


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof 1) of ``features`` (N, D), N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2).

    Parameters
    ----------
    mu1, mu2 : np.ndarray
        Shape (D,).
    cov1, cov2 : np.ndarray
        Symmetric positive semi-definite, shape (D, D).

    Returns
    -------
    float
        >= 0.
    """
    root1 = _psd_sqrt(np.asarray(cov1, dtype=np.float64))
    middle = root1 @ np.asarray(cov2, dtype=np.float64) @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    distance = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root
    # Rounding can leave a tiny negative value for identical distributions.
    return float(max(distance, 0.0))


def frechet_distance_of(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a (n, D) and b (m, D), shape (n, m)."""
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(points: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Distance from each point to its k-th nearest other point; shape (N,), needs N > k."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {len(points)}")
    radii = np.empty(len(points))
    for start in range(0, len(points), _CHUNK):
        block = _distances(points[start : start + _CHUNK], points)
        # Column k after sorting: column 0 is the point itself (distance 0).
        radii[start : start + _CHUNK] = np.partition(block, k, axis=1)[:, k]
    return radii


def _coverage(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray) -> float:
    """Fraction of ``queries`` within ``radii[i]`` of some ``manifold[i]`` (ball edges included)."""
    inside = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), _CHUNK):
        block = _distances(queries[start : start + _CHUNK], manifold)
        inside[start : start + _CHUNK] = (block <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = DEFAULT_K) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` (M, D) with respect to ``real`` (N, D).

    Returns
    -------
    precision : float
        Fraction of fake points inside the real manifold.
    recall : float
        Fraction of real points inside the fake manifold.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    precision = _coverage(real, knn_radii(real, k), fake)
    recall = _coverage(fake, knn_radii(fake, k), real)
    return precision, recall


@dataclass(frozen=True)
class SetQuality:
    """How close one synthetic set is to the real images of its class.

    Attributes
    ----------
    frechet : float
    precision, recall : float
    n_real, n_fake : int
    """

    frechet: float
    precision: float
    recall: float
    n_real: int
    n_fake: int


def compare(real: np.ndarray, fake: np.ndarray, k: int = DEFAULT_K) -> SetQuality:
    """Fréchet distance, precision and recall of ``fake`` against ``real`` features."""
    precision, recall = precision_recall(real, fake, k)
    return SetQuality(frechet_distance_of(real, fake), precision, recall, len(real), len(fake))
