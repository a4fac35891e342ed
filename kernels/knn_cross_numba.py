"""The numba path of `deepsmote.kernels.kneighbors_of`, above its ``SMALL_PAIRS`` pairs.

The queries are rows of the reference, but not the whole of it, so the distance matrix is a
rectangle with no symmetry to use: every tile of query rows against reference columns is computed.
The queries and the reference are padded float32 arrays, so that `knn_numba`'s micro-kernel
(`_tile_dots`, one compiled function for any tile and for the whole search) computes every dot
product, and its `_push` keeps each query's top-k under the total order (distance, index). Each
block of queries belongs to one thread, which alone writes its rows' top-k: the threads change
nothing. `knn_rows.NeighborRows` finds a class's drawn rows with it too, whose rows are then the
bytes of the whole search's (`kneighbors_of_padded`).

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .knn_numba import _BLOCK_ROWS, _MR, _RUN, _TILE_COLS, _launch, _push, _tile_dots, padded_codes, sq_norms

__all__ = ["kneighbors_of_gemm", "kneighbors_of_padded"]


@nb.njit(cache=True, nogil=True)
def _feed_rows(
    dots: np.ndarray,
    n_rows: int,
    n_cols: int,
    query0: int,
    col0: int,
    rows: np.ndarray,
    sq_norms: np.ndarray,
    heap_d: np.ndarray,
    heap_i: np.ndarray,
) -> None:
    """Feed a tile of dot products to the top-k of its queries.

    ``dots[a, b]`` = query ``query0 + a`` · reference row ``col0 + b``, for a < n_rows and b < n_cols
    (the rest is padding); ``rows`` maps a query to its own reference row, which is skipped.
    """
    last = heap_d.shape[1] - 1
    zero = np.float32(0.0)
    col_norms = sq_norms[col0 : col0 + n_cols]
    for a in range(n_rows):
        q = query0 + a
        own = rows[q]
        nq = sq_norms[own]
        dots_row = dots[a]
        for b0 in range(0, n_cols, _RUN):
            b1 = min(b0 + _RUN, n_cols)
            # A branch-free screen of a run of columns against the current worst neighbour skips
            # the runs without a winner; it compares the same float32 distance the insertion uses.
            worst = heap_d[q, last]
            hit = False
            for b in range(b0, b1):
                g = dots_row[b]
                hit |= ((nq + col_norms[b]) - (g + g)) <= worst
            if not hit:
                continue
            for b in range(b0, b1):
                g = dots_row[b]
                dist = (nq + col_norms[b]) - (g + g)
                j = col0 + b
                # The query's own row is excluded by index: its computed distance need not be zero.
                if dist <= worst and j != own:
                    _push(heap_d, heap_i, q, max(dist, zero), j)
                    worst = heap_d[q, last]


@nb.njit(parallel=True, cache=True)
def _kneighbors_of(
    reference: np.ndarray,
    n: int,
    queries: np.ndarray,
    rows: np.ndarray,
    sq_norms: np.ndarray,
    k: int,
    block_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the queries among the reference rows ``reference[:n]``.

    ``reference`` is float32, padded with zero rows to a multiple of _MR (`knn_numba.padded_codes`),
    ``queries`` its rows ``rows`` (m,) padded the same way; ``sq_norms`` is float32 (n,), of the
    reference. Work items are blocks of ``block_rows`` queries (a multiple of _MR, at most
    _BLOCK_ROWS); each query's selection is its own, so the blocks change nothing.
    """
    m = len(rows)
    m_pad, n_pad = queries.shape[0], reference.shape[0]
    n_blocks = (m + block_rows - 1) // block_rows
    # Sentinel (inf, n) loses to every real candidate, whose distance is finite.
    heap_d = np.full((m, k), np.inf, dtype=np.float32)
    heap_i = np.full((m, k), n, dtype=np.int64)
    for block in nb.prange(n_blocks):
        dots = np.empty((block_rows, _TILE_COLS), dtype=np.float32)
        q0 = block * block_rows
        n_rows = min(block_rows, m - q0)
        for col0 in range(0, n, _TILE_COLS):
            # Padding rows are zeros: computing whole micro-tiles keeps one code path.
            rows_in_tile = min(block_rows, m_pad - q0)
            cols_in_tile = min(_TILE_COLS, n_pad - col0)
            _tile_dots(queries, reference, q0, col0, rows_in_tile, cols_in_tile, dots)
            _feed_rows(dots, n_rows, min(_TILE_COLS, n - col0), q0, col0, rows, sq_norms, heap_d, heap_i)
    return heap_i, heap_d


def kneighbors_of_gemm(x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and squared distances of the k nearest neighbours of ``x[rows]`` among all rows of x.

    Parameters
    ----------
    x : np.ndarray
        float32, C-contiguous, shape (n, d): finite codes whose squared norms are at most a quarter
        of the float32 maximum, as `deepsmote.kernels.kneighbors_of` checks them.
    rows : np.ndarray
        int64, shape (m,), values in [0, n).
    k : int
        Neighbours per query, 1 <= k <= n - 1.

    Returns
    -------
    indices : np.ndarray
        int64, shape (m, k), nearest first, equal distances in increasing index order, never the
        query's own row.
    sq_distances : np.ndarray
        float32, shape (m, k): ‖a‖² + ‖b‖² − 2a·b, clamped at 0.
    """
    return kneighbors_of_padded(padded_codes(x), len(x), sq_norms(x), rows, k)


def kneighbors_of_padded(
    padded: np.ndarray, n: int, norms: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`kneighbors_of_gemm` of codes already padded and normed, as a caller that asks again keeps them.

    Parameters
    ----------
    padded : np.ndarray
        `knn_numba.padded_codes` of the n codes.
    n : int
        The codes.
    norms : np.ndarray
        `knn_numba.sq_norms` of the codes, float32 (n,): a query's norm is its row's.
    rows, k
        As `kneighbors_of_gemm`'s.

    Returns
    -------
    indices, sq_distances : np.ndarray
        As `kneighbors_of_gemm`'s. Where the queries are rows of one class and the codes that class,
        row a is row ``rows[a]`` of `knn_numba.kneighbors_gemm`'s result, the same bytes: both
        compute each pair's dot product with the one compiled `_tile_dots` and select the same way.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    m = len(rows)
    # One contiguous float32 signature for the queries too, padded to whole micro-tiles.
    queries = np.zeros((-(-m // _MR) * _MR, padded.shape[1]), dtype=np.float32)
    queries[:m] = padded[rows]
    # A block per thread, as few queries as a thread gets: 100 on two threads are two blocks of 54.
    per_thread = -(-m // nb.get_num_threads())
    block_rows = max(_MR, min(_BLOCK_ROWS, -(-per_thread // _MR) * _MR))
    with _launch:
        return _kneighbors_of(padded, n, queries, rows, norms, k, block_rows)
