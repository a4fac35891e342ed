"""Exact k nearest neighbours of a class's codes, found row by row for the rows a job draws.

A job needs the neighbours of the bases it draws, and the first shard's before its first image:
finding every code's at once costs O(n² d) before that image (1.4 s at 20,000 codes in numba),
finding the m rows the shards draw costs O(m n d), shard by shard. `NeighborRows` finds them in one
of two arithmetics:

- ``kernel="numpy"``, for a job that draws few bases (`finds_rows_on_demand`): the distances of
  `knn`'s GEMM-form path, ‖a‖² + ‖b‖² − 2a·b in float32 clamped at 0, with the same ``einsum`` dot
  products. numpy sums each dot product in an order set by d alone, whatever the number of rows
  asked for, their order or their alignment in memory (tested), so for a class of at most
  `knn.MEDIUM_N` codes the rows are the bytes of `kneighbors` itself. Above, where `kneighbors`
  takes numba's own dot products, they may differ from it where two distances are closer than
  float32 rounding. A job whose classes all take it never imports numba.
- ``kernel="numba"``, for a class above `knn.MEDIUM_N` codes that draws more: the numba kernel of
  `kneighbors_of` (`knn_cross_numba`), whose dot products are the whole search's own compiled
  function, so each row is the bytes of `kneighbors`' row (tested). Each row is found once, at
  ~1.5x its share of the whole search, which computes each pair once for both rows (all 4,400
  rows of 4,400 codes at d = 300: 0.128 s against 0.082 s). `whole` gives the table by the whole
  search, for a caller that ships it to copies (Ray's driver).

Either way a row's neighbours are the same bytes whichever shard, worker or thread finds them
first; which arithmetic a class takes depends only on n and the job's draw count.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from . import knn, threads
from .knn import SMALL_N, check_codes, effective_k, gemm_sq_distances, gemm_sq_norms, nearest_in_rows

__all__ = ["ROWS_LOAD_PAIRS", "ROWS_SLOWDOWN", "NeighborRows", "finds_rows_on_demand", "row_kernel"]

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


def row_kernel(n: int, draws: int) -> Literal["numpy", "numba"] | None:
    """The `NeighborRows` kernel of a class of ``n`` codes from which a job draws at most ``draws``
    bases, or None where it takes `kneighbors`' whole search (n <= `knn.MEDIUM_N`, many draws)."""
    if finds_rows_on_demand(n, draws):
        return "numpy"
    return "numba" if n > knn.MEDIUM_N else None


class NeighborRows:
    """Exact k nearest neighbours within the class of the rows asked for, each found once.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d), converted to contiguous float32; n >= 2, all values finite, refused
        (``ValueError``) where `kneighbors` refuses them.
    k : int
        Neighbours per row, >= 1, capped at ``n - 1`` with a warning, as `kneighbors` caps it.
    kernel : {'numpy', 'numba'}
        The arithmetic (module docstring): 'numpy' never imports numba; 'numba' gives `kneighbors`'
        rows for a class above `knn.MEDIUM_N` codes.

    Attributes
    ----------
    kernel : {'numpy', 'numba'}
        The arithmetic the rows are found in.
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

    def __init__(self, codes: np.ndarray, k: int, kernel: Literal["numpy", "numba"] = "numpy") -> None:
        if kernel not in ("numpy", "numba"):
            raise ValueError(f"kernel must be 'numpy' or 'numba', got {kernel!r}")
        self._codes = check_codes(codes)
        n = len(self._codes)
        self.kernel = kernel
        self.n_neighbors = effective_k(k, n)
        self.table = np.full((n, self.n_neighbors), -1, dtype=np.int64)
        self._found = np.zeros(n, dtype=bool)
        self._sq_norms = gemm_sq_norms(self._codes) if kernel == "numpy" else self._numba().sq_norms(self._codes)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The table, with the neighbours of ``rows`` (integer, shape (m,), values in [0, n)) found.

        Returns
        -------
        np.ndarray
            `table`, int64 (n, k_eff): the rows asked for hold their neighbours.
        """
        rows = np.asarray(rows)
        n = len(self._codes)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"rows must lie in [0, {n}), got {rows.min()}..{rows.max()}")
        missing = np.unique(rows[~self._found[rows]])
        if not len(missing):
            return self.table
        if self.kernel == "numba":
            self._find_numba(missing)
            return self.table
        n_threads = threads.current()
        per_block = max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // (4 * n), -(-len(missing) // n_threads)))
        blocks = [missing[i : i + per_block] for i in range(0, len(missing), per_block)]
        if len(blocks) == 1:
            self._find(blocks[0])
        else:
            with ThreadPoolExecutor(min(n_threads, len(blocks))) as pool:
                for _ in pool.map(self._find, blocks):
                    pass
        return self.table

    def whole(self) -> np.ndarray:
        """`table` with every row found, by one search of the whole class: for the numba kernel
        `kneighbors`' own, each pair computed once (the same bytes as its rows).

        Returns
        -------
        np.ndarray
            `table`, int64 (n, k_eff), no row -1.
        """
        if self.kernel == "numba" and not self._found.all():
            self.table[:] = self._numba().kneighbors_gemm(self._codes, self.n_neighbors)[0]
            self._found[:] = True
        return self(np.arange(len(self._codes)))

    def __getstate__(self) -> dict[str, Any]:
        # The numba kernel's padded copy of the codes is made again where it is needed.
        return {key: value for key, value in self.__dict__.items() if key != "_padded"}

    def _find(self, rows: np.ndarray) -> None:
        sq_dist = gemm_sq_distances(self._codes[rows], self._sq_norms[rows], self._codes, self._sq_norms)
        # Self is excluded by index: +inf sorts after every real distance, all finite, and k <= n - 1.
        sq_dist[np.arange(len(rows)), rows] = np.inf
        self.table[rows] = nearest_in_rows(sq_dist, self.n_neighbors)[0]
        self._found[rows] = True

    def _find_numba(self, rows: np.ndarray) -> None:
        knn_numba = self._numba()
        from . import knn_cross_numba

        if "_padded" not in self.__dict__:
            self._padded = knn_numba.padded_codes(self._codes)
        n = len(self._codes)
        indices, _ = knn_cross_numba.kneighbors_of_padded(self._padded, n, self._sq_norms, rows, self.n_neighbors)
        self.table[rows] = indices
        self._found[rows] = True

    @staticmethod
    def _numba() -> Any:
        """`knn_numba`, imported on first use, with numba settled for this thread (`threads.apply_pending`)."""
        from . import knn_numba

        threads.apply_pending()
        return knn_numba
