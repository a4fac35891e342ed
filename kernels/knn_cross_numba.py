"""The numba path of `deepsmote.kernels.kneighbors_of`, above its ``SMALL_PAIRS`` pairs.

The queries are rows of the reference, but not the whole of it, so the distance matrix is a
rectangle with no symmetry to use: every tile of query rows against reference columns is computed.
The queries and the reference lie in one padded float32 array so that `knn_numba`'s micro-kernel
(`_tile_dots`, one code path for any tile) computes every dot product, and its `_push` keeps each
query's top-k under the total order (distance, index). Each block of queries belongs to one lane,
which alone writes its rows' top-k: the lanes change nothing.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .knn_numba import _BLOCK_ROWS, _MR, _RUN, _TILE_COLS, _push, _sq_norms, _tile_dots

__all__ = ["kneighbors_of_gemm"]


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
    x: np.ndarray, n: int, query_offset: int, rows: np.ndarray, sq_norms: np.ndarray, k: int, n_lanes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the queries ``x[query_offset:]`` among the reference rows ``x[:n]``.

    ``x`` is float32: the reference padded with zero rows to ``query_offset`` (a multiple of _MR),
    then the queries padded to a multiple of _MR; ``sq_norms`` is float32 (n,), of the reference.
    """
    m = len(rows)
    m_pad = x.shape[0] - query_offset
    n_blocks = (m + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    # Sentinel (inf, n) loses to every real candidate, whose distance is finite.
    heap_d = np.full((m, k), np.inf, dtype=np.float32)
    heap_i = np.full((m, k), n, dtype=np.int64)
    for lane in nb.prange(n_lanes):
        dots = np.empty((_BLOCK_ROWS, _TILE_COLS), dtype=np.float32)
        for block in range(lane, n_blocks, n_lanes):
            q0 = block * _BLOCK_ROWS
            n_rows = min(_BLOCK_ROWS, m - q0)
            for col0 in range(0, n, _TILE_COLS):
                # Padding rows are zeros: computing whole micro-tiles keeps one code path.
                rows_in_tile = min(_BLOCK_ROWS, m_pad - q0)
                cols_in_tile = min(_TILE_COLS, query_offset - col0)
                _tile_dots(x, x, query_offset + q0, col0, rows_in_tile, cols_in_tile, dots)
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
    n, d = x.shape
    m = len(rows)
    query_offset = -(-n // _MR) * _MR
    # One contiguous float32 signature: reference and queries, each padded to whole micro-tiles;
    # the padding rows are never candidates.
    padded = np.zeros((query_offset + -(-m // _MR) * _MR, d), dtype=np.float32)
    padded[:n] = x
    padded[query_offset : query_offset + m] = x[rows]
    # Sequential float64 sums, as `kneighbors_gemm` takes them; a query's norm is its row's.
    sq_norms = _sq_norms(x).astype(np.float32)
    # More lanes than blocks of queries would only idle.
    n_blocks = -(-m // _BLOCK_ROWS)
    return _kneighbors_of(padded, n, query_offset, rows, sq_norms, k, max(1, min(nb.get_num_threads(), n_blocks)))
