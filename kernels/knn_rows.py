"""Exact k nearest neighbours of a class's codes, found row by row for the rows a job draws.

A job that draws few bases from a large class needs the neighbours of those bases only. Finding
every code's at once costs O(n² d) and, above `knn.MEDIUM_N` codes, loading numba (0.4-1.5 s warm
in a fresh process, minutes cold); finding the m rows the shards draw costs O(m n d) in numpy. A
class takes `NeighborRows` where that is the cheaper (`finds_rows_on_demand`), and a job whose
classes all do never imports numba.

The distances are those of `knn`'s GEMM-form path, ‖a‖² + ‖b‖² − 2a·b in float32 clamped at 0,
with the same ``einsum`` dot products: numpy sums each dot product in an order set by d alone,
whatever the number of rows asked for, their order or their alignment in memory (tested). So a
row's neighbours are the same bytes whichever shard, worker or thread finds them first, and for a
class of at most `knn.MEDIUM_N` codes they are the bytes of `kneighbors` itself. Above, where
`kneighbors` takes numba's own dot products, they may differ from it where two distances are closer
than float32 rounding; which path a class takes depends only on n and the job's draw count.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import threads
from .knn import SMALL_N, check_codes, effective_k, gemm_sq_distances, gemm_sq_norms, nearest_in_rows

__all__ = ["ROWS_LOAD_PAIRS", "ROWS_SLOWDOWN", "NeighborRows", "finds_rows_on_demand"]

# The cost model of `finds_rows_on_demand`, in query-reference pairs. Measured at d = 300 on the
# 2-core EPYC Zen 4 (`benchmarks/knn.py --bases`): a row here costs 1.3e-10 s per pair and
# dimension, the whole search in numba 12x less per pair of the (n, n) matrix (it computes half of
# it, with its own micro-kernel), and loading numba in a fresh process ~0.5 s warm: the time of
# ROWS_LOAD_PAIRS pairs of rows at d = 300.
ROWS_SLOWDOWN = 12
ROWS_LOAD_PAIRS = 1 << 23

# float32 distances held at once per block of rows (16 MiB); a block is a unit of work for a thread.
_BLOCK_BYTES = 16 << 20

# Rows per block at most, as the GEMM-form path's blocks.
_BLOCK_ROWS = 256


def finds_rows_on_demand(n: int, draws: int) -> bool:
    """Whether a class of ``n`` codes, from which a job draws at most ``draws`` bases, takes `NeighborRows`.

    It does where the rows of every draw cost at most what the whole search would, numba's load
    included: ``draws * n <= n * n / ROWS_SLOWDOWN + ROWS_LOAD_PAIRS`` (2,273 draws at most from
    4,400 codes, 2,086 from 20,000). A class of at most `knn.SMALL_N` codes never does: its
    neighbours are `kneighbors`' float64 differences, whose bytes every job of earlier versions had.
    The rule depends on n and the job's counts alone, never on the machine, so the bytes do not.
    """
    return n > SMALL_N and draws * n * ROWS_SLOWDOWN <= n * n + ROWS_LOAD_PAIRS * ROWS_SLOWDOWN


class NeighborRows:
    """Exact k nearest neighbours within the class of the rows asked for, each found once.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d), converted to contiguous float32; n >= 2, all values finite, refused
        (``ValueError``) where `kneighbors` refuses them.
    k : int
        Neighbours per row, >= 1, capped at ``n - 1`` with a warning, as `kneighbors` caps it.

    Attributes
    ----------
    n_neighbors : int
        k_eff, neighbours per row.
    table : np.ndarray
        int64, shape (n, k_eff): row i holds its neighbours, nearest first, ties by index, self
        excluded by index, once row i was asked for; -1 before.

    Notes
    -----
    The object pickles with the rows found so far; a copy finds the others itself, the same bytes.
    Two threads asking for the same row at once both find it and write the same values.
    """

    def __init__(self, codes: np.ndarray, k: int) -> None:
        self._codes = check_codes(codes)
        n = len(self._codes)
        self.n_neighbors = effective_k(k, n)
        self._sq_norms = gemm_sq_norms(self._codes)
        self.table = np.full((n, self.n_neighbors), -1, dtype=np.int64)
        self._found = np.zeros(n, dtype=bool)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The table, with the neighbours of ``rows`` (integer, shape (m,), values in [0, n)) found.

        Returns
        -------
        np.ndarray
            `table`, int64 (n, k_eff): the rows asked for hold their neighbours.
        """
        rows = np.asarray(rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self._codes)):
            raise ValueError(f"rows must lie in [0, {len(self._codes)}), got {rows.min()}..{rows.max()}")
        missing = np.unique(rows[~self._found[rows]])
        if len(missing):
            n_threads = threads.current()
            per_block = max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // (4 * len(self._codes)), -(-len(missing) // n_threads)))
            blocks = [missing[i : i + per_block] for i in range(0, len(missing), per_block)]
            if len(blocks) == 1:
                self._find(blocks[0])
            else:
                with ThreadPoolExecutor(min(n_threads, len(blocks))) as pool:
                    for _ in pool.map(self._find, blocks):
                        pass
        return self.table

    def _find(self, rows: np.ndarray) -> None:
        sq_dist = gemm_sq_distances(self._codes[rows], self._sq_norms[rows], self._codes, self._sq_norms)
        # Self is excluded by index: +inf sorts after every real distance, all finite, and k <= n - 1.
        sq_dist[np.arange(len(rows)), rows] = np.inf
        self.table[rows] = nearest_in_rows(sq_dist, self.n_neighbors)[0]
        self._found[rows] = True
