"""Exact k nearest neighbours of some codes among all codes: the k-NN across classes.

`kneighbors_of` finds, for each code ``codes[rows[i]]`` (one class's codes, say), its k nearest
neighbours among every row of ``codes`` (all classes' codes), its own row excluded by index. It
keeps the rules of `deepsmote.kernels.kneighbors` (exact distances, ties to the smaller index, the
path chosen by size alone, no BLAS) and its pieces:

- ``len(rows) * len(codes) <= SMALL_PAIRS`` (the pairs of a class of 256 codes):
  numpy, float64 differences sorted in float64 and returned rounded to float32;
- above: the numba kernel of `knn_cross_numba`, the GEMM form ‖a‖² + ‖b‖² − 2a·b in float32,
  clamped at 0, with `knn_numba`'s micro-kernel and top-k insertion.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numpy as np

from . import threads
from .knn import check_codes, effective_k, nearest_in_rows, sq_distances

__all__ = ["SMALL_PAIRS", "kneighbors_of"]

# Query-reference pairs up to which the numpy path runs: about 25 ms at d = 300. Unlike a class's
# own distances they have no symmetry to halve, so the bound stays where `kneighbors`' was in 0.4.
SMALL_PAIRS = 256 * 256


def kneighbors_of(codes: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of the rows ``rows`` of ``codes`` among all rows of ``codes``.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d), converted to contiguous float32; n >= 2, all values finite: the reference.
    rows : np.ndarray
        Integer, shape (m,), values in [0, n): the query rows. A query's own row is never its
        neighbour (excluded by index, not by distance); a duplicate of it elsewhere can be.
    k : int
        Neighbours per query, >= 1. With ``k >= n`` all ``n - 1`` other rows are returned and a
        warning says so.

    Returns
    -------
    indices : np.ndarray
        int64, shape (m, k_eff) with ``k_eff = min(k, n - 1)``: row indices into ``codes``, nearest
        first, equal distances in increasing index order.
    sq_distances : np.ndarray
        float32, shape (m, k_eff): as `kneighbors` defines them on the path that ran.

    Raises
    ------
    ValueError
        For codes `kneighbors` refuses, a bad ``k``, or ``rows`` that are not 1-D integers in [0, n).

    Notes
    -----
    The path depends only on (m, n), and each query's top-k is computed by one thread from the
    same dot products, so the result is the same bytes whatever the thread count. Memory beyond
    the result: for the numpy path the (m, n) float64 distances; above, a padded float32 copy of
    ``codes`` and of the queries and a fixed 96 x 256 tile of dot products per thread.
    """
    x = check_codes(codes)
    n = x.shape[0]
    queries = np.asarray(rows)
    if queries.ndim != 1 or not np.issubdtype(queries.dtype, np.integer):
        raise ValueError(f"rows must be a 1-D integer array, got dtype {queries.dtype} and shape {queries.shape}")
    if queries.size and (queries.min() < 0 or queries.max() >= n):
        raise ValueError(f"rows must be in [0, {n}), got values from {queries.min()} to {queries.max()}")
    queries = np.ascontiguousarray(queries, dtype=np.int64)
    k_eff = effective_k(k, n)
    if len(queries) * n <= SMALL_PAIRS:
        return _kneighbors_of_numpy(x, queries, k_eff)
    from .knn_cross_numba import kneighbors_of_gemm

    threads.apply_pending()
    return kneighbors_of_gemm(x, queries, k_eff)


def _kneighbors_of_numpy(x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`kneighbors_of` by float64 differences; 1 <= k <= n - 1."""
    x64 = x.astype(np.float64)
    sq_dist = sq_distances(x64[rows], x64)
    # Each query's own row is excluded by index, as `kneighbors` excludes its diagonal.
    sq_dist[np.arange(len(rows)), rows] = np.inf
    return nearest_in_rows(sq_dist, k)
