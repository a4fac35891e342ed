"""deepsmote.kernels.kneighbors against the numpy references in naive.py, on each of its three paths."""

from __future__ import annotations

import sys
import warnings

import naive
import numba
import numpy as np
import pytest
from deepsmote.kernels import kneighbors, knn, knn_numba

PATHS = {"numpy": "_kneighbors_numpy", "numpy-gemm": "_kneighbors_numpy_gemm", "numba": "kneighbors_gemm"}


@pytest.fixture(params=list(PATHS))
def knn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Send every class down one path of `kneighbors`, whatever its size; the other paths fail the test."""

    def other_path(*args: object) -> None:
        raise AssertionError(f"kneighbors left the {request.param} path")

    bounds = {"numpy": (sys.maxsize, sys.maxsize), "numpy-gemm": (1, sys.maxsize), "numba": (1, 1)}
    monkeypatch.setattr(knn, "SMALL_N", bounds[request.param][0])
    monkeypatch.setattr(knn, "MEDIUM_N", bounds[request.param][1])
    for path, name in PATHS.items():
        if path != request.param:
            monkeypatch.setattr(knn_numba if path == "numba" else knn, name, other_path)
    return request.param


def integer_codes(n: int, d: int, seed: int) -> np.ndarray:
    """Small integer values, many exact ties and some duplicate rows: every distance is exact in float32."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    if n >= 4:
        dup = rng.choice(n, size=n // 4, replace=False)
        codes[dup] = codes[rng.integers(0, n, size=dup.size)]
    return codes


def knn_quiet(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return kneighbors(codes, k)


@pytest.mark.parametrize(
    ("n", "d", "k"),
    [(2, 3, 1), (2, 3, 5), (3, 1, 2), (5, 2, 4), (9, 4, 30), (130, 3, 5), (517, 2, 8), (1100, 4, 5), (2100, 5, 6)],
)
def test_exact_match_with_ties(knn_path: str, n: int, d: int, k: int) -> None:
    codes = integer_codes(n, d, seed=n * 31 + d)
    indices, sq_dist = knn_quiet(codes, k)
    ref_idx, ref_dist = naive.kneighbors(naive.sq_distances_diff(codes), k)
    assert indices.dtype == np.int64 and sq_dist.dtype == np.float32
    assert indices.shape == sq_dist.shape == (n, min(k, n - 1))
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_array_equal(sq_dist, ref_dist.astype(np.float32))


def test_all_rows_equal_keeps_index_order(knn_path: str) -> None:
    # Every distance is 0: the neighbours are the other rows in increasing order, never self.
    indices, sq_dist = kneighbors(np.full((6, 3), 0.7, dtype=np.float32), 3)
    np.testing.assert_array_equal(indices, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    assert (sq_dist == 0).all()


def test_self_excluded_despite_cancellation(knn_path: str) -> None:
    # Large offsets make ‖a‖² + ‖a‖² − 2a·a round away from 0, and near-duplicates round to 0 too.
    rng = np.random.default_rng(3)
    codes = (1e3 + rng.standard_normal((300, 16)) * 1e-3).astype(np.float32)
    indices, sq_dist = kneighbors(codes, 5)
    assert not (indices == np.arange(300)[:, None]).any()
    assert (np.sort(indices, axis=1)[:, 1:] != np.sort(indices, axis=1)[:, :-1]).all()
    assert (sq_dist >= 0).all()


@pytest.mark.parametrize(
    ("n", "d", "k", "seed"), [(40, 8, 5, 0), (700, 32, 5, 1), (1300, 300, 5, 2), (2100, 16, 10, 3)]
)
def test_random_codes_match_float64_differences(knn_path: str, n: int, d: int, k: int, seed: int) -> None:
    # Continuous codes scaled to unit norm on average: distances are O(1), and near-ties closer
    # than float32 rounding are vanishingly rare, so the indices must agree exactly.
    codes = (np.random.default_rng(seed).standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    indices, sq_dist = kneighbors(codes, k)
    ref_idx, ref_dist = naive.kneighbors(naive.sq_distances_diff(codes), k)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_allclose(sq_dist, ref_dist, rtol=1e-6, atol=1e-6)
    if knn_path == "numpy":
        # The same float64 distances, rounded once: only a sum order differs, which rounding hides.
        np.testing.assert_array_equal(sq_dist, ref_dist.astype(np.float32))


def test_random_codes_match_the_reference_of_their_path(knn_path: str) -> None:
    codes = np.random.default_rng(4).standard_normal((1500, 64)).astype(np.float32)
    indices, sq_dist = kneighbors(codes, 5)
    reference = naive.sq_distances_diff if knn_path == "numpy" else naive.sq_distances_gemm32
    ref_idx, ref_dist = naive.kneighbors(reference(codes), 5)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_allclose(sq_dist, ref_dist, rtol=1e-6)


def test_converts_dtype_and_layout(knn_path: str) -> None:
    codes = integer_codes(50, 6, seed=5)
    expected = kneighbors(codes, 4)
    for other in (codes.astype(np.float64), np.asfortranarray(codes), codes.astype(np.int32)):
        got = kneighbors(other, 4)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_k_at_least_n_warns_and_uses_n_minus_1(knn_path: str) -> None:
    codes = integer_codes(4, 3, seed=6)
    with pytest.warns(UserWarning, match=r"k=4 >= n=4 .*using k=3"):
        indices, sq_dist = kneighbors(codes, 4)
    assert indices.shape == sq_dist.shape == (4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kneighbors(codes, 3)


@pytest.mark.parametrize(
    ("codes", "k", "match"),
    [
        (np.zeros((0, 3)), 1, "at least 2 rows"),
        (np.zeros((1, 3)), 1, "at least 2 rows"),
        (np.zeros(5), 1, "2-D"),
        (np.zeros((2, 2, 2)), 1, "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), 1, "NaN or inf"),
        (np.array([[0.0, np.inf], [1.0, 0.0]]), 1, "NaN or inf"),
        (np.array([[0.0, -np.inf], [1.0, 0.0]]), 1, "NaN or inf"),
        (np.array([[0.0, 1e39], [1.0, 0.0]]), 1, "NaN or inf"),
        (np.array([[0.0, 1e20], [1.0, 0.0]]), 1, "overflow"),
        (np.zeros((3, 2)), 0, "positive integer"),
        (np.zeros((3, 2)), -1, "positive integer"),
        (np.zeros((3, 2)), 1.5, "positive integer"),
        (np.zeros((3, 2)), True, "positive integer"),
    ],
)
@pytest.mark.filterwarnings("error")
def test_rejects_bad_input(knn_path: str, codes: np.ndarray, k: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kneighbors(codes, k)  # type: ignore[arg-type]


def test_accepts_numpy_integer_k(knn_path: str) -> None:
    indices, _ = kneighbors(integer_codes(10, 2, seed=7), np.int64(3))
    assert indices.shape == (10, 3)


def test_same_bytes_for_any_thread_count(knn_path: str) -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    codes = np.random.default_rng(8).standard_normal((1100, 40)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kneighbors(codes, 5)
        numba.set_num_threads(2)
        two = kneighbors(codes, 5)
    finally:
        numba.set_num_threads(before)
    assert one[0].tobytes() == two[0].tobytes()
    assert one[1].tobytes() == two[1].tobytes()


def test_same_bytes_for_any_blas_thread_count(knn_path: str) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    codes = np.random.default_rng(9).standard_normal((1100, 40)).astype(np.float32)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        one = kneighbors(codes, 5)
    two = kneighbors(codes, 5)
    assert one[0].tobytes() == two[0].tobytes()
    assert one[1].tobytes() == two[1].tobytes()


def test_path_depends_on_the_class_size_only(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    for path, name in PATHS.items():
        module = knn_numba if path == "numba" else knn
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, path=path, kernel=kernel: taken.append(path) or kernel(*args))
    for n in (2, knn.SMALL_N, knn.SMALL_N + 1, knn.MEDIUM_N, knn.MEDIUM_N + 1):
        knn_quiet(integer_codes(n, 3, seed=n), 5)
    assert taken == ["numpy", "numpy", "numpy-gemm", "numpy-gemm", "numba"]


def test_numpy_path_same_bytes_for_any_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chunks of differences split rows, never a sum; a last, shorter chunk changes nothing.
    codes = np.random.default_rng(10).standard_normal((200, 300)).astype(np.float32)
    whole = kneighbors(codes, 5)
    monkeypatch.setattr(knn, "_CHUNK_ELEMENTS", 7 * 200 * 300)
    chunked = kneighbors(codes, 5)
    monkeypatch.setattr(knn, "_CHUNK_ELEMENTS", 1)
    row_by_row = kneighbors(codes, 5)
    for got in (chunked, row_by_row):
        assert got[0].tobytes() == whole[0].tobytes()
        assert got[1].tobytes() == whole[1].tobytes()


def test_numpy_path_same_bytes_for_any_block_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each block is mirrored below the diagonal: Σ (a − b)² is the same float64 for (a, b) and (b, a).
    codes = (np.random.default_rng(11).standard_normal((150, 37)) * 30).astype(np.float32)
    whole = kneighbors(codes, 6)
    for rows in (1, 7, 150):
        monkeypatch.setattr(knn, "_BLOCK_ROWS", rows)
        got = kneighbors(codes, 6)
        assert got[0].tobytes() == whole[0].tobytes()
        assert got[1].tobytes() == whole[1].tobytes()


def test_partial_selection_is_the_stable_sort_of_each_row() -> None:
    # Ties at the k-th distance (small integers) and none (continuous values), +inf on the diagonal.
    rng = np.random.default_rng(12)
    for sq_dist in (rng.integers(0, 4, (60, 60)).astype(np.float64), rng.random((60, 60))):
        np.fill_diagonal(sq_dist, np.inf)
        for k in (1, 3, 59):
            indices, values = knn.nearest_in_rows(sq_dist, k)
            expected = np.argsort(sq_dist, axis=1, kind="stable")[:, :k]
            np.testing.assert_array_equal(indices, expected)
            np.testing.assert_array_equal(values, np.take_along_axis(sq_dist, expected, axis=1).astype(np.float32))


def test_gemm_path_same_bytes_for_any_python_thread_count_and_block_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks are mirrored below the diagonal and shared among threads: neither changes a value.
    codes = (np.random.default_rng(13).standard_normal((300, 37)) * 30).astype(np.float32)
    whole = knn._kneighbors_numpy_gemm(codes, 6, 1)
    for rows, n_threads in ((256, 2), (256, 5), (1, 3), (7, 2), (300, 1)):
        monkeypatch.setattr(knn, "_GEMM_BLOCK_ROWS", rows)
        got = knn._kneighbors_numpy_gemm(codes, 6, n_threads)
        assert got[0].tobytes() == whole[0].tobytes()
        assert got[1].tobytes() == whole[1].tobytes()


def test_gemm_path_same_bytes_whatever_the_alignment_of_the_codes() -> None:
    # einsum's vector loop must not start its sums at an alignment boundary of the rows' memory.
    codes = np.random.default_rng(14).standard_normal((300, 37)).astype(np.float32)
    whole = knn._kneighbors_numpy_gemm(codes, 6, 2)
    for offset in (4, 8, 12, 20, 36):
        buffer = np.zeros(codes.nbytes + 64, dtype=np.uint8)
        shifted = buffer[offset : offset + codes.nbytes].view(np.float32).reshape(codes.shape)
        shifted[...] = codes
        got = knn._kneighbors_numpy_gemm(shifted, 6, 2)
        assert got[0].tobytes() == whole[0].tobytes()
        assert got[1].tobytes() == whole[1].tobytes()


def test_gemm_path_runs_on_the_thread_count_set_for_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    counts: list[int] = []
    kernel = knn._kneighbors_numpy_gemm
    monkeypatch.setattr(knn, "_kneighbors_numpy_gemm", lambda x, k, n: counts.append(n) or kernel(x, k, n))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        kneighbors(integer_codes(knn.SMALL_N + 1, 3, seed=15), 5)
    finally:
        numba.set_num_threads(before)
    assert counts == [1]
