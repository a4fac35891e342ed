"""Fréchet distance against closed forms, and improved precision/recall on hand-made point sets."""

from __future__ import annotations

import numpy as np
import pytest
from deepsmote.evaluation.quality import (
    compare,
    frechet_distance,
    frechet_distance_of,
    knn_radii,
    precision_recall,
)


def rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_frechet_of_gaussians_with_shared_eigenvectors_matches_the_closed_form():
    # With commuting covariances R diag(a) R^T and R diag(b) R^T:
    # FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    d, r = 6, rotation(6, 0)
    a, b = np.linspace(0.5, 3.0, d), np.linspace(2.0, 0.1, d)
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1]
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, r @ np.diag(a) @ r.T, mu2, r @ np.diag(b) @ r.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_in_one_dimension_is_mean_and_deviation_gap_squared():
    got = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert got == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2)


def test_frechet_of_non_commuting_covariances_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(5), b @ b.T
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    root = linalg.sqrtm(cov1 @ cov2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)


def test_frechet_is_zero_for_identical_and_works_for_singular_covariances():
    cov = np.diag([1.0, 0.0, 2.0])
    assert frechet_distance(np.ones(3), cov, np.ones(3), cov) == pytest.approx(0.0, abs=1e-12)
    points = np.random.default_rng(2).standard_normal((4, 10))  # 4 points in 10-d: rank 3
    assert frechet_distance_of(points, points) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(3)
    r = rotation(3, 4)
    cov1, cov2 = r @ np.diag([1.0, 2.0, 0.5]) @ r.T, r @ np.diag([0.25, 2.0, 2.0]) @ r.T
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    x = rng.multivariate_normal(mu1, cov1, size=50_000)
    y = rng.multivariate_normal(mu2, cov2, size=50_000)
    assert frechet_distance_of(x, y) == pytest.approx(frechet_distance(mu1, cov1, mu2, cov2), rel=0.02)


def test_knn_radii_exclude_the_point_itself():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(points, 1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(knn_radii(points, 2), [3.0, 2.0, 3.0, 6.0])
    with pytest.raises(ValueError, match="more than 4"):
        knn_radii(points, 4)


def test_precision_and_recall_on_hand_made_sets():
    # Real: 0, 1, 2, 3 on a line; with k = 1 every real ball has radius 1, covering [-1, 4].
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    # Fake: two inside the real manifold, two far away at 10 and 10.5 (radii 0.5 among themselves).
    fake = np.array([[0.5], [3.9], [10.0], [10.5]])
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == pytest.approx(0.5)
    # Fake radii (k = 1): 0.5 -> 3.4, 3.9 -> 3.4, 10 -> 0.5, 10.5 -> 0.5; the ball around 0.5 of
    # radius 3.4 holds every real point.
    assert recall == pytest.approx(1.0)


def test_mode_collapse_has_precision_but_no_recall():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((400, 2))
    collapsed = 0.01 * rng.standard_normal((400, 2))  # all fakes at the real mode
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision == 1.0
    assert recall < 0.2


def test_the_same_set_has_full_precision_and_recall_and_no_distance():
    points = np.random.default_rng(6).standard_normal((50, 4))
    quality = compare(points, points)
    assert (quality.precision, quality.recall, quality.n_real, quality.n_fake) == (1.0, 1.0, 50, 50)
    assert quality.frechet == pytest.approx(0.0, abs=1e-9)
