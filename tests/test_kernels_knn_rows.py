"""deepsmote.kernels.NeighborRows against the numpy references in naive.py and `kneighbors`' GEMM-form path."""

from __future__ import annotations

import pickle
import warnings

import naive
import numpy as np
import pytest
from deepsmote.kernels import NeighborRows, finds_rows_on_demand, knn, knn_rows
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
