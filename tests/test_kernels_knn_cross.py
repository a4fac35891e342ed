"""deepsmote.kernels.kneighbors_of (the k-NN across classes) against naive.py, on both of its paths."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import naive
import numpy as np
import pytest
from deepsmote.kernels import kneighbors, kneighbors_of, knn_cross, knn_cross_numba
from test_kernels_knn import integer_codes


@pytest.fixture(params=["numpy", "numba"])
def cross_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Send every call down one path of `kneighbors_of`, whatever its size; the other path fails the test."""

    def other_path(*args: object) -> None:
        raise AssertionError(f"kneighbors_of left the {request.param} path")

    if request.param == "numpy":
        monkeypatch.setattr(knn_cross, "SMALL_PAIRS", sys.maxsize)
        monkeypatch.setattr(knn_cross_numba, "kneighbors_of_gemm", other_path)
    else:
        monkeypatch.setattr(knn_cross, "SMALL_PAIRS", -1)
        monkeypatch.setattr(knn_cross, "_kneighbors_of_numpy", other_path)
    return request.param


def quiet(codes: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return kneighbors_of(codes, rows, k)


def class_rows(n: int, m: int, seed: int) -> np.ndarray:
    """m distinct rows of n in a shuffled order, as one class's rows spread through the data."""
    return np.random.default_rng(seed).permutation(n)[:m]


@pytest.mark.parametrize(
    ("n", "m", "d", "k"),
    # 2 codes; k >= n; queries in several blocks of 96 and references in several tiles of 256.
    [(2, 1, 3, 1), (5, 2, 2, 9), (40, 7, 3, 10), (300, 100, 3, 5), (700, 250, 2, 10), (1100, 13, 4, 6)],
)
def test_exact_match_with_ties(cross_path: str, n: int, m: int, d: int, k: int) -> None:
    codes = integer_codes(n, d, seed=n + m)
    rows = class_rows(n, m, seed=m)
    indices, sq_dist = quiet(codes, rows, k)
    ref_idx, ref_dist = naive.kneighbors_of(naive.sq_distances_cross_diff(codes, rows), rows, k)
    assert indices.dtype == np.int64 and sq_dist.dtype == np.float32
    assert indices.shape == sq_dist.shape == (m, min(k, n - 1))
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_array_equal(sq_dist, ref_dist.astype(np.float32))


def test_equal_codes_keep_index_order_and_skip_only_the_own_row(cross_path: str) -> None:
    # Every distance is 0: the neighbours are the other rows in increasing order, never the query's own.
    indices, sq_dist = kneighbors_of(np.full((6, 3), 0.7, dtype=np.float32), np.array([4, 0]), 3)
    np.testing.assert_array_equal(indices, [[0, 1, 2], [1, 2, 3]])
    assert (sq_dist == 0).all()


def test_own_row_excluded_despite_cancellation(cross_path: str) -> None:
    rng = np.random.default_rng(3)
    codes = (1e3 + rng.standard_normal((300, 16)) * 1e-3).astype(np.float32)
    rows = class_rows(300, 120, seed=1)
    indices, sq_dist = kneighbors_of(codes, rows, 5)
    assert not (indices == rows[:, None]).any()
    assert (np.sort(indices, axis=1)[:, 1:] != np.sort(indices, axis=1)[:, :-1]).all()
    assert (sq_dist >= 0).all()


def test_random_codes_match_the_reference_of_their_path(cross_path: str) -> None:
    codes = np.random.default_rng(4).standard_normal((1500, 64)).astype(np.float32)
    rows = class_rows(1500, 300, seed=2)
    indices, sq_dist = kneighbors_of(codes, rows, 10)
    full = naive.sq_distances_gemm32(codes) if cross_path == "numba" else naive.sq_distances_diff(codes)
    ref_idx, ref_dist = naive.kneighbors_of(full[rows], rows, 10)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_allclose(sq_dist, ref_dist, rtol=1e-6)


def test_all_rows_as_queries_is_kneighbors(cross_path: str) -> None:
    # The queries being every row, the k-NN across is the k-NN within: the same indices.
    codes = integer_codes(400, 3, seed=11)
    within, _ = kneighbors(codes, 7)
    across, _ = kneighbors_of(codes, np.arange(400), 7)
    np.testing.assert_array_equal(across, within)


def test_k_at_least_n_warns_and_uses_n_minus_1(cross_path: str) -> None:
    codes = integer_codes(4, 3, seed=6)
    with pytest.warns(UserWarning, match=r"k=4 >= n=4 .*using k=3"):
        indices, _ = kneighbors_of(codes, np.array([1]), 4)
    assert indices.shape == (1, 3)


@pytest.mark.parametrize(
    ("codes", "rows", "k", "match"),
    [
        (np.zeros((1, 3)), np.array([0]), 1, "at least 2 rows"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), np.array([0]), 1, "NaN or inf"),
        (np.zeros((3, 2)), np.array([0]), 0, "positive integer"),
        (np.zeros((3, 2)), np.array([0.0]), 1, "1-D integer"),
        (np.zeros((3, 2)), np.array([[0]]), 1, "1-D integer"),
        (np.zeros((3, 2)), np.array([3]), 1, r"in \[0, 3\)"),
        (np.zeros((3, 2)), np.array([-1]), 1, r"in \[0, 3\)"),
    ],
)
@pytest.mark.filterwarnings("error")
def test_rejects_bad_input(cross_path: str, codes: np.ndarray, rows: np.ndarray, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kneighbors_of(codes, rows, k)


def test_no_queries(cross_path: str) -> None:
    indices, sq_dist = kneighbors_of(integer_codes(5, 2, seed=1), np.zeros(0, dtype=np.int64), 3)
    assert indices.shape == sq_dist.shape == (0, 3)


def test_path_depends_on_the_pairs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    numpy_path, numba_path = knn_cross._kneighbors_of_numpy, knn_cross_numba.kneighbors_of_gemm
    monkeypatch.setattr(knn_cross, "_kneighbors_of_numpy", lambda *a: taken.append("numpy") or numpy_path(*a))
    monkeypatch.setattr(knn_cross_numba, "kneighbors_of_gemm", lambda *a: taken.append("numba") or numba_path(*a))
    n = 512
    codes = integer_codes(n, 3, seed=2)
    for m in (1, knn_cross.SMALL_PAIRS // n, knn_cross.SMALL_PAIRS // n + 1):
        kneighbors_of(codes, np.arange(m), 5)
    assert taken == ["numpy", "numpy", "numba"]


_THREADS_SCRIPT = """
import hashlib, sys
import numba, numpy as np
from deepsmote.kernels import kneighbors_of
codes = np.random.default_rng(8).standard_normal((1100, 40)).astype(np.float32)
rows = np.random.default_rng(9).permutation(1100)[:500]
for threads in (1, 2, 3):
    numba.set_num_threads(threads)
    indices, sq_dist = kneighbors_of(codes, rows, 10)
    print(threads, hashlib.sha256(indices.tobytes() + sq_dist.tobytes()).hexdigest())
"""


def test_same_bytes_for_1_2_and_3_threads() -> None:
    # 500 x 1100 pairs take the numba path; numba's pool must have 3 real threads, so a fresh process.
    env = {**os.environ, "NUMBA_NUM_THREADS": "4"}
    lines = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert lines[0::2] == ["1", "2", "3"]
    assert len(set(lines[1::2])) == 1
