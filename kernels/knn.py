"""Exact k nearest neighbours of every code among the codes of the same class.

Three paths, chosen by the number of codes n alone, so the neighbours of a class never depend on
the batch size, the thread count or the number of workers:

- n <= ``SMALL_N``: numpy. Squared distances Σ (a − b)² of float64 differences, sorted in float64
  and returned rounded to float32. Only the blocks on and above the diagonal are computed (the
  value for (a, b) is the same float64 as for (b, a)), and the k smallest of a row are selected,
  not sorted whole.
- ``SMALL_N`` < n <= ``MEDIUM_N``: numpy in the GEMM form ‖a‖² + ‖b‖² − 2a·b in float32, clamped
  at 0, the dot products by ``einsum`` (no BLAS), the blocks on and above the diagonal split over
  Python threads (`threads.current`; einsum releases the GIL). A class of ``MEDIUM_N`` codes
  costs it about 0.45 s at d = 300 on two cores, against 0.7-1.5 s for importing numba and
  loading its compiled kernels in a fresh process (and ~127 MiB of resident memory), so a job
  whose classes are all at most this large never imports numba.
- larger n: the numba kernel of `knn_numba`, which takes the same GEMM form with its own dot
  products and scales to classes of any size in O(n k) memory.

A job takes none of them for a class above ``SMALL_N`` codes from which it draws few bases, nor for
any class above ``MEDIUM_N``: `knn_rows.NeighborRows` finds the rows it draws as it draws them,
with this module's GEMM-form arithmetic or with the numba kernel's (then the bytes of this search).

None of them calls BLAS: OpenBLAS rounds differently depending on how many threads split a
product, so its distances (and so the neighbours of near-ties) would change with the BLAS thread
count. numpy's ``einsum`` without ``optimize`` sums products in its own loop, the same for every
block of rows and every thread, whatever the rows' alignment in memory.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import threads

__all__ = ["MEDIUM_N", "SMALL_N", "kneighbors"]

# Classes of at most this many codes take the float64-differences path. Its cost grows as n² d:
# measured at d = 300 on the 2-core EPYC, 19-22 ms at n = 256, 67 ms at 512 and 0.22-0.24 s at 1024
# (0.47-0.53 s before the mirrored blocks and the partial selection). Kept at 1,024, where the GEMM
# form would be faster, because it fixes the bytes of every job whose classes are this small.
SMALL_N = 1024

# Classes of at most this many codes (and more than SMALL_N) take numpy's GEMM form. Measured at
# d = 300 on the 2-core EPYC: 43 / 128 / 447 ms at n = 1,100 / 2,048 / 4,096 on two threads (82 /
# 206 / 918 ms on one), against 0.7-0.95 s for a fresh process to import numba, load its kernels
# and run them at n = 4,096 (0.9-1.5 s where scipy is installed: numba then imports scipy.linalg).
# A job with one class at the bound saves 0.3-1 s; one with two such classes pays about what
# loading numba would cost.
MEDIUM_N = 4096

# Rows per block of the GEMM-form path: each block's dot products against the columns on and
# right of the diagonal are one einsum, a unit of work for a thread.
_GEMM_BLOCK_ROWS = 256

# Rows of the distance matrix per mirrored block of the numpy path (fastest of 32, 64, 128).
_BLOCK_ROWS = 32

# float64 differences held at once by the numpy path (1 MiB): larger chunks measured slower.
_CHUNK_ELEMENTS = 1 << 17

# A squared distance is at most 4 max‖a‖²; keeping that finite in float32 also keeps every partial
# dot product of the numba path finite (Cauchy–Schwarz), so no NaN can reach the top-k.
_MAX_SQ_NORM = float(np.finfo(np.float32).max) / 4


def kneighbors(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row among the other rows.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d), converted to contiguous float32; n >= 2, all values finite.
    k : int
        Neighbours per row, >= 1. With ``k >= n`` all ``n - 1`` other rows are returned and a
        warning says so.

    Returns
    -------
    indices : np.ndarray
        int64, shape (n, k_eff) with ``k_eff = min(k, n - 1)``: row indices into ``codes``, nearest
        first, equal distances in increasing index order, never the row itself (excluded by index,
        not by distance).
    sq_distances : np.ndarray
        float32, shape (n, k_eff): the matching squared Euclidean distances. For n <= ``SMALL_N``
        they are float64 sums of squared differences rounded to float32, and the order (ties
        included) is that of the float64 values; above, they are ‖a‖² + ‖b‖² − 2a·b in float32,
        clamped at 0, and the order is that of the float32 values.

    Raises
    ------
    ValueError
        If ``codes`` is not 2-D, has fewer than 2 rows, holds NaN or inf, or is so large that squared
        distances overflow float32; or if ``k`` is not a positive integer.

    Notes
    -----
    Which path runs depends only on n, so a class's result is the same bytes whatever the batch
    size, the numba, BLAS or Python thread count, or the number of workers. Memory beyond the
    result: for n <= ``SMALL_N``, the (n, n) float64 distances and 1 MiB of differences; up to
    ``MEDIUM_N``, the (n, n) float32 distances (64 MiB at 4,096) and three 256 x n float32 blocks
    per thread; above, a padded float32 copy of ``codes``, one top-k of shape (n, k_eff) per numba
    thread, and a fixed 96 x 256 tile of dot products per thread, whatever n.
    """
    x = check_codes(codes)
    k_eff = effective_k(k, x.shape[0])
    if x.shape[0] <= SMALL_N:
        return _kneighbors_numpy(x, k_eff)
    if x.shape[0] <= MEDIUM_N:
        return _kneighbors_numpy_gemm(x, k_eff, threads.current())
    from .knn_numba import kneighbors_gemm

    threads.apply_pending()
    return kneighbors_gemm(x, k_eff)


def check_codes(codes: np.ndarray) -> np.ndarray:
    """``codes`` as contiguous float32 (n, d), n >= 2, refused (``ValueError``) where `kneighbors` refuses them."""
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, d), got shape {arr.shape}")
    n = arr.shape[0]
    if n < 2:
        raise ValueError(f"codes must have at least 2 rows to have neighbours, got {n}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        x = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("codes contain NaN or inf (after conversion to float32)")
    if np.einsum("ij,ij->i", x, x, dtype=np.float64).max() > _MAX_SQ_NORM:
        raise ValueError("codes are too large: their squared distances would overflow float32")
    return x


def effective_k(k: int, n: int) -> int:
    """``k`` checked positive, capped at the ``n - 1`` other codes with a warning saying so."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= n:
        warnings.warn(f"k={k} >= n={n} codes: using k={n - 1} neighbours", stacklevel=3)
        return n - 1
    return int(k)


def sq_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Σ (a − b)² of float64 differences, shape (n_q, n): every query row against every reference row.

    Computed in chunks of ``_CHUNK_ELEMENTS`` differences; a chunk splits rows, never a sum.
    """
    d = reference.shape[1]
    sq_dist = np.empty((len(queries), len(reference)), dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // max(len(reference) * d, 1))
    for start in range(0, len(queries), rows):
        diff = queries[start : start + rows, None, :] - reference[None, :, :]
        sq_dist[start : start + rows] = np.einsum("ijk,ijk->ij", diff, diff)
    return sq_dist


def nearest_in_rows(sq_dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries of each row of float64 ``sq_dist`` (self already set to +inf), ties by index.

    Returns int64 column indices, shape (rows, k), and their distances rounded to float32: the
    first k columns of a stable argsort of each row, found by a partial selection.
    """
    picked = np.argpartition(sq_dist, k - 1, axis=1)[:, :k]
    # Sorting the k picked by index, then stably by distance, orders them by (distance, index).
    by_index = np.sort(picked, axis=1)
    by_index_values = np.take_along_axis(sq_dist, by_index, axis=1)
    order = np.argsort(by_index_values, axis=1, kind="stable")
    indices = np.take_along_axis(by_index, order, axis=1).astype(np.int64, copy=False)
    values = np.take_along_axis(by_index_values, order, axis=1)
    # Where the k-th distance is shared with a column left out, the selection may have kept a
    # larger index than the stable order would: such rows are sorted whole.
    tied = np.count_nonzero(sq_dist <= values[:, -1:], axis=1) > k
    for row in np.flatnonzero(tied):
        indices[row] = np.argsort(sq_dist[row], kind="stable")[:k]
        values[row] = sq_dist[row, indices[row]]
    return indices, values.astype(np.float32)


def gemm_sq_norms(x: np.ndarray) -> np.ndarray:
    """float32, shape (n,): ‖a‖² of each row of float32 x (n, d), summed in float64 and rounded once
    (as the numba path takes them)."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)


def gemm_sq_distances(
    queries: np.ndarray, query_norms: np.ndarray, reference: np.ndarray, reference_norms: np.ndarray
) -> np.ndarray:
    """float32, shape (m, n): ‖a‖² + ‖b‖² − 2a·b clamped at 0, query rows (m, d) against reference rows (n, d).

    The norms are `gemm_sq_norms`' of the same rows. The dot products are ``einsum``'s, whose sum for
    one pair depends on d alone, not on m, n or where the rows lie in memory: a pair's value is the
    same float32 in every block that holds it.
    """
    dots = np.einsum("ik,jk->ij", queries, reference)
    sq_dist = (query_norms[:, None] + reference_norms[None, :]) - (dots + dots)
    np.maximum(sq_dist, np.float32(0), out=sq_dist)
    return sq_dist


def _kneighbors_numpy(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`kneighbors` of float32 codes x, shape (n, d), by float64 differences; 1 <= k <= n - 1."""
    x64 = x.astype(np.float64)
    n = len(x64)
    sq_dist = np.empty((n, n), dtype=np.float64)
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        block = sq_distances(x64[start:stop], x64[start:])
        sq_dist[start:stop, start:] = block
        sq_dist[start:, start:stop] = block.T
    # Self is excluded by index: +inf sorts after every real distance, all finite, and k <= n - 1.
    np.fill_diagonal(sq_dist, np.inf)
    return nearest_in_rows(sq_dist, k)


def _kneighbors_numpy_gemm(x: np.ndarray, k: int, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """`kneighbors` of float32 codes x, shape (n, d), in the GEMM form; 1 <= k <= n - 1.

    The blocks of rows, and then the bands of rows whose k smallest are selected, are shared among
    ``n_threads`` Python threads; each block is the same arithmetic whichever thread runs it.
    """
    n = len(x)
    sq_norms = gemm_sq_norms(x)
    sq_dist = np.empty((n, n), dtype=np.float32)

    def fill_block(start: int) -> None:
        stop = min(start + _GEMM_BLOCK_ROWS, n)
        block = gemm_sq_distances(x[start:stop], sq_norms[start:stop], x[start:], sq_norms[start:])
        # (a, b) and (b, a) are the same float32: products and the norms' sum commute, and the
        # dot product is summed in the same order. Blocks write disjoint parts of sq_dist.
        sq_dist[start:stop, start:] = block
        sq_dist[start:, start:stop] = block.T

    def select_band(start: int) -> tuple[np.ndarray, np.ndarray]:
        return nearest_in_rows(sq_dist[start : start + _GEMM_BLOCK_ROWS], k)

    starts = range(0, n, _GEMM_BLOCK_ROWS)
    with ThreadPoolExecutor(max(1, min(n_threads, len(starts)))) as pool:
        for _ in pool.map(fill_block, starts):
            pass
        # Self is excluded by index: +inf sorts after every real distance, all finite, and k <= n - 1.
        np.fill_diagonal(sq_dist, np.inf)
        bands = list(pool.map(select_band, starts))
    return np.concatenate([i for i, _ in bands]), np.concatenate([v for _, v in bands])
