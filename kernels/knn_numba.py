"""The numba path of `deepsmote.kernels.kneighbors`, for classes above its ``MEDIUM_N`` codes.

Imported only when such a class is fitted: importing numba and loading these compiled kernels
costs 0.6-1.5 s per process (more where scipy is installed), and compiling them into an empty cache
6-13 s; `preload.py` starts that load while DATA is encoded.

Squared distances take the GEMM form ‖a‖² + ‖b‖² − 2a·b, clamped at 0. The distance matrix is
symmetric, so only the tiles on and above the diagonal are computed; each tile feeds the running
top-k of its rows and, transposed, of its columns, and the top-k is a selection under the total
order (distance, index).

The dot products are computed by numba, not BLAS: OpenBLAS rounds differently depending on how many
threads split a product, so its distances (and so the neighbours of near-ties) would change with
the BLAS thread count. Here each dot product goes through the same micro-kernel whatever the thread
count or the tile it falls in, and the result is the same bytes for any number of numba threads.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

__all__ = ["kneighbors_gemm", "padded_codes", "sq_norms"]

# numba's workqueue threading layer, the one left where neither TBB nor OpenMP is installed, aborts
# when parallel kernels start from two threads at once: each launch holds this lock.
_launch = threading.Lock()

# Rows per work item (a multiple of _MR): its codes (96 x d float32) stay in L2 while it runs.
_BLOCK_ROWS = 96
# Columns per tile (a multiple of _NR): one tile's column codes stay in L2 beside the rows.
_TILE_COLS = 256
# Micro-kernel shape: 6 rows x 2 columns of dot products share their loads, and their 12
# vector accumulators (enough to hide FMA latency) stay in the 16 AVX registers.
_MR = 6
_NR = 2
# Columns screened together against the current worst neighbour before any scalar insertion.
_RUN = 32
# Reassociation lets LLVM vectorise the sums over the code dimension and contraction lets it use
# FMA; the order is fixed by the compiled code, not by threads or tiles.
_DOT_MATH = {"reassoc", "contract"}


@nb.njit(cache=True, nogil=True)
def _sq_norms(codes: np.ndarray) -> np.ndarray:
    """‖a‖² of every row, accumulated in float64; shape (n,)."""
    n, d = codes.shape
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        acc = 0.0
        for c in range(d):
            v = np.float64(codes[i, c])
            acc += v * v
        out[i] = acc
    return out


@nb.njit(cache=True, nogil=True, fastmath=_DOT_MATH)
def _tile_dots(x: np.ndarray, y: np.ndarray, row0: int, col0: int, n_rows: int, n_cols: int, out: np.ndarray) -> None:
    """out[a, b] = x[row0 + a] · y[col0 + b] for a < n_rows, b < n_cols, multiples of _MR and _NR.

    The whole search calls it with y = x, `knn_cross_numba` with queries and codes: one compiled
    function, so a pair's dot product is the same float32 whichever search computes it, and in
    either order (the products and their fused additions commute).
    """
    d = x.shape[1]
    for a in range(0, n_rows, _MR):
        x0 = x[row0 + a]
        x1 = x[row0 + a + 1]
        x2 = x[row0 + a + 2]
        x3 = x[row0 + a + 3]
        x4 = x[row0 + a + 4]
        x5 = x[row0 + a + 5]
        for b in range(0, n_cols, _NR):
            y0 = y[col0 + b]
            y1 = y[col0 + b + 1]
            s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = s40 = s41 = s50 = s51 = np.float32(0.0)
            for c in range(d):
                u0 = y0[c]
                u1 = y1[c]
                s00 += x0[c] * u0
                s01 += x0[c] * u1
                s10 += x1[c] * u0
                s11 += x1[c] * u1
                s20 += x2[c] * u0
                s21 += x2[c] * u1
                s30 += x3[c] * u0
                s31 += x3[c] * u1
                s40 += x4[c] * u0
                s41 += x4[c] * u1
                s50 += x5[c] * u0
                s51 += x5[c] * u1
            out[a, b] = s00
            out[a, b + 1] = s01
            out[a + 1, b] = s10
            out[a + 1, b + 1] = s11
            out[a + 2, b] = s20
            out[a + 2, b + 1] = s21
            out[a + 3, b] = s30
            out[a + 3, b + 1] = s31
            out[a + 4, b] = s40
            out[a + 4, b + 1] = s41
            out[a + 5, b] = s50
            out[a + 5, b + 1] = s51


@nb.njit(inline="always")
def _push(heap_d: np.ndarray, heap_i: np.ndarray, row: int, dist: np.float32, idx: int) -> None:
    """Insert (dist, idx) into row's sorted top-k if it beats the worst entry under (distance, index)."""
    k = heap_d.shape[1]
    last = k - 1
    if dist > heap_d[row, last] or (dist == heap_d[row, last] and idx > heap_i[row, last]):
        return
    pos = last
    while pos > 0 and (dist < heap_d[row, pos - 1] or (dist == heap_d[row, pos - 1] and idx < heap_i[row, pos - 1])):
        heap_d[row, pos] = heap_d[row, pos - 1]
        heap_i[row, pos] = heap_i[row, pos - 1]
        pos -= 1
    heap_d[row, pos] = dist
    heap_i[row, pos] = idx


@nb.njit(cache=True, nogil=True)
def _feed_tile(
    dots: np.ndarray,
    n_rows: int,
    n_cols: int,
    row0: int,
    col0: int,
    first_col: int,
    sq_norms: np.ndarray,
    heap_d: np.ndarray,
    heap_i: np.ndarray,
    side_d: np.ndarray,
    side_i: np.ndarray,
    col_worst: np.ndarray,
) -> None:
    """Feed a tile of dot products to the top-k of its rows and of its columns.

    Parameters
    ----------
    dots : np.ndarray
        float32, shape (>= n_rows, >= n_cols): dots[a, b] = codes[row0 + a] · codes[col0 + b].
    n_rows, n_cols : int
        The tile's real rows and columns (the rest is padding).
    row0, col0 : int
        Index of the tile's first row and first column in ``codes``.
    first_col : int
        Columns before it are rows of the same work item, which feeds them as rows; the others
        take the tile's rows as candidates, fed from this side only.
    sq_norms : np.ndarray
        float32, shape (n,).
    heap_d, heap_i : np.ndarray
        float32 and int64, shape (n, k): per row, the best (distance, index) pairs so far, sorted.
        Only the tile's rows are written.
    side_d, side_i : np.ndarray
        As ``heap_d, heap_i``, for the candidates that reach a row as a column; private to the
        caller's lane.
    col_worst : np.ndarray
        float32, shape (>= n_cols,): scratch for the worst distance kept by each column.
    """
    last = heap_d.shape[1] - 1
    zero = np.float32(0.0)
    # -inf keeps the columns that are fed as rows out of the column screen.
    col_worst[:first_col] = -np.inf
    for b in range(first_col, n_cols):
        col_worst[b] = side_d[col0 + b, last]
    # Slices rather than offset indices let LLVM see non-negative indices and vectorise the screen.
    col_norms = sq_norms[col0 : col0 + n_cols]
    for a in range(n_rows):
        i = row0 + a
        ni = sq_norms[i]
        dots_row = dots[a]
        for b0 in range(0, n_cols, _RUN):
            b1 = min(b0 + _RUN, n_cols)
            # Most candidates lose to both the row's and the column's current worst entry: a
            # branch-free screen of a run of columns skips the runs without a winner. It compares
            # the same float32 distance the insertion uses, before the clamp at 0, which cannot
            # turn a loser into a winner.
            worst = heap_d[i, last]
            hit = False
            for b in range(b0, b1):
                g = dots_row[b]
                dist = (ni + col_norms[b]) - (g + g)
                hit |= (dist <= worst) | (dist <= col_worst[b])
            if not hit:
                continue
            for b in range(b0, b1):
                g = dots_row[b]
                dist = (ni + col_norms[b]) - (g + g)
                j = col0 + b
                # Self is excluded by index: its computed distance need not be exactly zero.
                if dist <= worst and j != i:
                    _push(heap_d, heap_i, i, max(dist, zero), j)
                    worst = heap_d[i, last]
                if dist <= col_worst[b]:
                    _push(side_d, side_i, j, max(dist, zero), i)
                    col_worst[b] = side_d[j, last]


@nb.njit(parallel=True, cache=True)
def _kneighbors(x: np.ndarray, n: int, sq_norms: np.ndarray, k: int, n_lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and squared distances of the k nearest neighbours of the first n rows of x.

    x is float32 (n_pad, d), zero rows padding it to a multiple of _MR; sq_norms is float32 (n,).
    Work items are blocks of _BLOCK_ROWS rows, each paired with its mirror block so that every lane
    gets the same amount of the triangle. A lane writes its blocks' rows in the shared top-k and
    the candidates it finds for other rows in its own side top-k; the side top-ks are merged at the
    end. What a lane finds does not depend on which lane finds it, and a selection under a total
    order does not depend on the order of its candidates, so the lanes change nothing.
    """
    n_pad = x.shape[0]
    n_blocks = (n + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    n_pairs = (n_blocks + 1) // 2
    # Sentinel (inf, n) loses to every real candidate, whose distance is finite.
    heap_d = np.full((n, k), np.inf, dtype=np.float32)
    heap_i = np.full((n, k), n, dtype=np.int64)
    side_d = np.full((n_lanes, n, k), np.inf, dtype=np.float32)
    side_i = np.full((n_lanes, n, k), n, dtype=np.int64)
    for lane in nb.prange(n_lanes):
        dots = np.empty((_BLOCK_ROWS, _TILE_COLS), dtype=np.float32)
        col_worst = np.empty(_TILE_COLS, dtype=np.float32)
        for pair in range(lane, n_pairs, n_lanes):
            mirror = n_blocks - 1 - pair
            for block in (pair, mirror):
                row0 = block * _BLOCK_ROWS
                n_rows = min(_BLOCK_ROWS, n - row0)
                for col0 in range(row0, n, _TILE_COLS):
                    n_cols = min(_TILE_COLS, n - col0)
                    # Padding rows are zeros: computing whole micro-tiles keeps one code path.
                    _tile_dots(x, x, row0, col0, min(_BLOCK_ROWS, n_pad - row0), min(_TILE_COLS, n_pad - col0), dots)
                    _feed_tile(
                        dots,
                        n_rows,
                        n_cols,
                        row0,
                        col0,
                        max(row0 + n_rows - col0, 0),
                        sq_norms,
                        heap_d,
                        heap_i,
                        side_d[lane],
                        side_i[lane],
                        col_worst,
                    )
                if mirror == pair:
                    break
    for i in nb.prange(n):
        for lane in range(n_lanes):
            for s in range(k):
                if side_i[lane, i, s] < n:
                    _push(heap_d, heap_i, i, side_d[lane, i, s], side_i[lane, i, s])
    return heap_i, heap_d


def kneighbors_gemm(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and squared distances of the k nearest neighbours of every row of x.

    Parameters
    ----------
    x : np.ndarray
        float32, C-contiguous, shape (n, d): finite codes whose squared norms are at most a quarter
        of the float32 maximum, as `deepsmote.kernels.kneighbors` checks them.
    k : int
        Neighbours per row, 1 <= k <= n - 1.

    Returns
    -------
    indices : np.ndarray
        int64, shape (n, k), nearest first, equal distances in increasing index order, never self.
    sq_distances : np.ndarray
        float32, shape (n, k): ‖a‖² + ‖b‖² − 2a·b, clamped at 0.

    Notes
    -----
    Memory beyond the result: a padded float32 copy of ``x``, one top-k of shape (n, k) per numba
    thread, and a fixed 96 x 256 tile of dot products per thread, whatever ``n``.
    """
    n = len(x)
    # More lanes than pairs of blocks would only hold empty side top-ks.
    n_pairs = -(-n // (2 * _BLOCK_ROWS))
    with _launch:
        return _kneighbors(padded_codes(x), n, sq_norms(x), k, min(nb.get_num_threads(), n_pairs))


def padded_codes(x: np.ndarray) -> np.ndarray:
    """float32 C-contiguous (n_pad, d): x (n, d) and zero rows up to whole micro-tiles (n_pad a multiple of 6).

    One contiguous float32 signature for numba; the padding rows are never candidates.
    """
    n, d = x.shape
    padded = np.zeros((-(-n // _MR) * _MR, d), dtype=np.float32)
    padded[:n] = x
    return padded


def sq_norms(x: np.ndarray) -> np.ndarray:
    """float32, shape (n,): the squared norms both searches take, of float32 C-contiguous x (n, d).

    Sequential float64 sums, which fix the bytes of the distances; `knn.check_codes`' overflow check
    sums in another order.
    """
    return _sq_norms(x).astype(np.float32)
