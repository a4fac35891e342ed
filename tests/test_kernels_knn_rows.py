"""deepsmote.kernels.NeighborRows against the references in naive.py and `kneighbors`' GEMM-form and numba paths."""

from __future__ import annotations

import pickle
import warnings

import naive
import numpy as np
import pytest
from deepsmote.kernels import NeighborRows, finds_rows_on_demand, knn, knn_cross_numba, knn_numba, knn_rows, row_kernel
from test_kernels_knn import integer_codes


def rows_quiet(codes: np.ndarray, k: int) -> NeighborRows:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return NeighborRows(codes, k)


@pytest.mark.parametrize(("n", "d", "k"), [(2, 3, 1), (5, 2, 4), (9, 4, 30), (517, 2, 8), (1100, 4, 5)])
def test_exact_match_with_ties(n: int, d: int, k: int) -> None:
    codes = integer_codes(n, d, seed=n * 17 + d)
    search = rows_quiet(codes, k)
    table = search(np.arange(n))
    ref_idx, _ = naive.kneighbors(naive.sq_distances_diff(codes), k)
    assert table.dtype == np.int64 and table.shape == (n, min(k, n - 1)) == ref_idx.shape
    assert search.n_neighbors == min(k, n - 1)
    np.testing.assert_array_equal(table, ref_idx)


def test_random_codes_match_the_gemm_form_reference() -> None:
    codes = np.random.default_rng(4).standard_normal((1500, 64)).astype(np.float32)
    rows = np.random.default_rng(5).integers(0, 1500, 200)
    ref_idx, _ = naive.kneighbors(naive.sq_distances_gemm32(codes), 5)
    np.testing.assert_array_equal(NeighborRows(codes, 5)(rows)[rows], ref_idx[rows])


@pytest.mark.parametrize("n", [knn.SMALL_N + 76, knn.MEDIUM_N + 404])
def test_rows_are_the_bytes_of_the_gemm_form_path_whatever_was_asked_before(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Codes rounded to 0.1 make near-ties and exact ties; rows asked alone, repeated, in any
    # order and on any thread count are each the row the whole GEMM-form search finds.
    rng = np.random.default_rng(n)
    codes = np.round(rng.standard_normal((n, 33)), 1).astype(np.float32)
    codes[7] = codes[3]
    whole, _ = knn._kneighbors_numpy_gemm(codes, 6, 2)
    orders = [np.array([3]), np.array([7, 3, 3, 9]), rng.integers(0, n, 300), rng.permutation(n)]
    for n_threads in (1, 3):
        monkeypatch.setattr(knn_rows.threads, "current", lambda n_threads=n_threads: n_threads)
        search = NeighborRows(codes, 6)
        for rows in orders:
            table = search(rows)
            assert table[rows].tobytes() == whole[rows].tobytes()
        assert table.tobytes() == whole.tobytes()


def test_unasked_rows_hold_minus_one_and_a_pickled_copy_finds_the_rest_the_same() -> None:
    codes = integer_codes(40, 3, seed=8)
    search = NeighborRows(codes, 4)
    table = search(np.array([2, 5]))
    assert (np.delete(table, [2, 5], axis=0) == -1).all() and (table[[2, 5]] >= 0).all()
    copy = pickle.loads(pickle.dumps(search))
    assert copy(np.arange(40)).tobytes() == NeighborRows(codes, 4)(np.arange(40)).tobytes()


def test_blocks_of_one_row_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = (np.random.default_rng(13).standard_normal((1200, 37)) * 30).astype(np.float32)
    whole = NeighborRows(codes, 6)(np.arange(1200)).copy()
    monkeypatch.setattr(knn_rows, "_BLOCK_ROWS", 1)
    assert NeighborRows(codes, 6)(np.arange(1200)).tobytes() == whole.tobytes()


def test_self_excluded_despite_cancellation() -> None:
    codes = (1e3 + np.random.default_rng(3).standard_normal((300, 16)) * 1e-3).astype(np.float32)
    table = NeighborRows(codes, 5)(np.arange(300))
    assert not (table == np.arange(300)[:, None]).any()


@pytest.mark.parametrize(
    ("codes", "rows", "match"),
    [
        (np.zeros((1, 3)), [0], "at least 2 rows"),
        (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), [0], "NaN or inf"),
        (np.zeros((3, 2)), [3], r"rows must lie in \[0, 3\)"),
        (np.zeros((3, 2)), [-1], r"rows must lie in \[0, 3\)"),
    ],
)
def test_rejects_bad_input(codes: np.ndarray, rows: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NeighborRows(codes, 1)(np.array(rows))


def test_a_class_finds_rows_on_demand_only_above_small_n_and_where_the_rows_cost_less() -> None:
    assert not finds_rows_on_demand(knn.SMALL_N, 1)
    # draws * n <= n * n / 12 + 2**23: 2,273 draws from 4,400 codes, 2,086 from 20,000, 7,090 from 1,200.
    for n, most in ((4400, 2273), (20_000, 2086), (1200, 7090)):
        assert finds_rows_on_demand(n, most) and not finds_rows_on_demand(n, most + 1), n
    assert knn_rows.ROWS_SLOWDOWN == 12 and knn_rows.ROWS_LOAD_PAIRS == 1 << 23


# The numba kernel: each row is the bytes of the whole numba search (`kneighbors` above MEDIUM_N).


def numba_rows(codes: np.ndarray, k: int) -> NeighborRows:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return NeighborRows(codes, k, "numba")


@pytest.mark.parametrize(("n", "d", "k"), [(2, 3, 1), (9, 4, 30), (517, 2, 8), (1100, 4, 5)])
def test_numba_rows_match_the_float64_reference_where_every_distance_is_exact(n: int, d: int, k: int) -> None:
    codes = integer_codes(n, d, seed=n * 23 + d)
    table = numba_rows(codes, k)(np.arange(n))
    ref_idx, _ = naive.kneighbors(naive.sq_distances_diff(codes), k)
    np.testing.assert_array_equal(table, ref_idx)


@pytest.mark.parametrize(("n", "d"), [(knn.MEDIUM_N + 404, 33), (knn.MEDIUM_N + 9, 300), (1500, 7)])
def test_numba_rows_are_the_bytes_of_the_whole_numba_search_whatever_was_asked_before(n: int, d: int) -> None:
    # Codes rounded to 0.1 make near-ties and exact ties, where two arithmetics would part.
    import numba

    rng = np.random.default_rng(n + d)
    codes = np.round(rng.standard_normal((n, d)), 1).astype(np.float32)
    codes[7] = codes[3]
    whole_idx, whole_dist = knn_numba.kneighbors_gemm(codes, 6)
    padded, norms = knn_numba.padded_codes(codes), knn_numba.sq_norms(codes)
    before = numba.get_num_threads()
    try:
        for n_threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n_threads)
            for rows in (np.array([3]), np.array([7, 3, 3, 9]), rng.integers(0, n, 300), rng.permutation(n)):
                idx, dist = knn_cross_numba.kneighbors_of_padded(padded, n, norms, rows, 6)
                assert idx.tobytes() == whole_idx[rows].tobytes() and dist.tobytes() == whole_dist[rows].tobytes()
    finally:
        numba.set_num_threads(before)


def test_numba_rows_same_bytes_for_any_block_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = (np.random.default_rng(17).standard_normal((700, 19)) * 30).astype(np.float32)
    rows = np.random.default_rng(18).permutation(700)[:250]
    padded, norms = knn_numba.padded_codes(codes), knn_numba.sq_norms(codes)
    wide = knn_cross_numba.kneighbors_of_padded(padded, 700, norms, rows, 5)
    monkeypatch.setattr(knn_cross_numba, "_BLOCK_ROWS", 6)
    narrow = knn_cross_numba.kneighbors_of_padded(padded, 700, norms, rows, 5)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(wide, narrow, strict=True))


def test_numba_rows_find_each_row_once_and_whole_is_one_whole_search(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 1000
    codes = np.round(np.random.default_rng(21).standard_normal((n, 12)), 1).astype(np.float32)
    whole, _ = knn_numba.kneighbors_gemm(codes, 5)
    calls = []
    for module, name in ((knn_numba, "kneighbors_gemm"), (knn_cross_numba, "kneighbors_of_padded")):
        kernel = getattr(module, name)

        def traced(*args, kernel=kernel, name=name):
            calls.append((name, len(args[3]) if name == "kneighbors_of_padded" else len(args[0])))
            return kernel(*args)

        monkeypatch.setattr(module, name, traced)
    search = NeighborRows(codes, 5, "numba")
    search(np.arange(600))
    table = search(np.arange(500, 900))  # 300 new rows
    assert calls == [("kneighbors_of_padded", 600), ("kneighbors_of_padded", 300)]
    assert (table[900:] == -1).all() and table[:900].tobytes() == whole[:900].tobytes()
    assert search.whole().tobytes() == whole.tobytes() and calls[2:] == [("kneighbors_gemm", n)]
    search(np.arange(n))
    assert search.whole() is search.table and len(calls) == 3, "rows found were searched again"


def test_numba_rows_pickle_without_their_padded_copy_and_a_copy_finds_the_rest_the_same() -> None:
    codes = np.round(np.random.default_rng(22).standard_normal((900, 10)), 1).astype(np.float32)
    search = NeighborRows(codes, 4, "numba")
    search(np.array([2, 5]))
    state = search.__getstate__()
    assert "_padded" in search.__dict__ and "_padded" not in state
    copy = pickle.loads(pickle.dumps(search))
    rows = np.arange(0, 900, 7)
    assert copy(rows)[rows].tobytes() == knn_numba.kneighbors_gemm(codes, 4)[0][rows].tobytes()


def test_rejects_an_unknown_kernel() -> None:
    with pytest.raises(ValueError, match="kernel must be 'numpy' or 'numba', got 'blas'"):
        NeighborRows(np.zeros((3, 2), dtype=np.float32), 1, "blas")  # type: ignore[arg-type]


def test_row_kernel_is_numpy_for_few_draws_above_small_n_and_numba_above_medium_n() -> None:
    big = knn.MEDIUM_N + 1
    assert row_kernel(knn.SMALL_N, 1) is None and row_kernel(knn.SMALL_N, 10**6) is None
    assert row_kernel(knn.MEDIUM_N, 1) == "numpy" and row_kernel(knn.MEDIUM_N, knn.MEDIUM_N) is None
    assert row_kernel(big, 1) == "numpy" and row_kernel(big, 0) == "numpy"
    assert row_kernel(big, big) == "numba" and row_kernel(20_000, 10**7) == "numba"
