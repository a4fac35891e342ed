"""SMOTE interpolation between codes and their drawn neighbours.

Every random choice (base row, neighbour slot, gap) is drawn by the caller and passed in, so the
computation is plain float32 arithmetic and its output does not depend on the thread count. Two
paths give the same bytes: numpy's expression for outputs of at most ``SMALL_SIZE`` values, and a
parallel numba kernel (`interpolate_numba`) above, where it is faster; numba is imported only then.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numpy as np

from . import threads

__all__ = ["SMALL_SIZE", "interpolate"]

# Outputs of at most this many values (m * d) take the numpy path. Measured at d = 300 with both
# paths loaded (2 cores), numpy is faster up to about 2,000 rows, as numba's parallel launch alone
# costs 5-8 ms, and 1.5x slower (9 ms against 6) at 3,500 rows, which is 2**20 values: a few ms
# lost on the largest calls it takes, against ~0.6 s for loading numba when nothing else needs it.
SMALL_SIZE = 1 << 20


def _index_array(name: str, values: np.ndarray) -> np.ndarray:
    """A 1-D contiguous int64 copy or view of an integer array; floats are refused, not truncated."""
    arr = np.asarray(values)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def interpolate(
    codes: np.ndarray,
    neighbors: np.ndarray,
    base: np.ndarray,
    slot: np.ndarray,
    gap: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """SMOTE points between drawn codes and drawn neighbours.

    Row r of the result is ``z_base + gap[r] * (z_nb - z_base)`` with ``z_base = codes[base[r]]``
    and ``z_nb = codes[neighbors[base[r], slot[r]]]``, evaluated in float32 exactly as numpy
    evaluates ``codes[base] + gap[:, None] * (codes[nb] - codes[base])``: the same bytes whichever
    path runs, and whatever the thread count.

    Parameters
    ----------
    codes : np.ndarray
        Shape (n, d), converted to contiguous float32.
    neighbors : np.ndarray
        Integer, shape (n, k_eff): row indices into ``codes``, as returned by `kneighbors`; only
        the rows ``base`` draws are read (and must lie in [0, n)).
    base : np.ndarray
        Integer, shape (m,): the base row of each new point, in [0, n).
    slot : np.ndarray
        Integer, shape (m,): which of the base row's neighbours to move towards, in [0, k_eff).
    gap : np.ndarray
        Float, shape (m,): the fraction of the way to the neighbour, in [0, 1) once converted to
        float32 (draw it with ``rng.random(m, dtype=np.float32)``).
    out : np.ndarray, optional
        float32, C-contiguous, shape (m, d): written in place and returned, to reuse a buffer.

    Returns
    -------
    np.ndarray
        float32, shape (m, d).

    Raises
    ------
    ValueError
        If a shape, dtype or value is outside the ranges above.
    """
    x = np.ascontiguousarray(codes, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, d), got shape {x.shape}")
    n, d = x.shape
    nbrs = np.asarray(neighbors)
    if nbrs.ndim != 2 or nbrs.shape[0] != n or not np.issubdtype(nbrs.dtype, np.integer):
        raise ValueError(
            f"neighbors must be an integer array of shape ({n}, k), got dtype {nbrs.dtype} and shape {nbrs.shape}"
        )
    nbrs = np.ascontiguousarray(nbrs, dtype=np.int64)
    k_eff = nbrs.shape[1]
    base_i = _index_array("base", base)
    slot_i = _index_array("slot", slot)
    gap_f = np.asarray(gap)
    if gap_f.ndim != 1 or not np.issubdtype(gap_f.dtype, np.floating):
        raise ValueError(f"gap must be a 1-D float array, got dtype {gap_f.dtype} and shape {gap_f.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        gap_f = np.ascontiguousarray(gap_f, dtype=np.float32)
    m = base_i.shape[0]
    if slot_i.shape[0] != m or gap_f.shape[0] != m:
        raise ValueError(
            f"base, slot and gap must have the same length, got {m}, {slot_i.shape[0]} and {gap_f.shape[0]}"
        )
    if out is None:
        out = np.empty((m, d), dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != (m, d) or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape ({m}, {d}), got dtype {out.dtype} and shape {out.shape}"
        )
    if m == 0:
        return out
    if base_i.min() < 0 or base_i.max() >= n:
        raise ValueError(f"base must be in [0, {n}), got values in [{base_i.min()}, {base_i.max()}]")
    if slot_i.min() < 0 or slot_i.max() >= k_eff:
        raise ValueError(f"slot must be in [0, {k_eff}), got values in [{slot_i.min()}, {slot_i.max()}]")
    # Only the drawn neighbours are checked, as only they are read: in a table found on demand
    # (`NeighborRows`) the rows of codes no base drew hold -1.
    drawn = nbrs[base_i, slot_i]
    if drawn.min() < 0 or drawn.max() >= n:
        raise ValueError(f"neighbors must index rows of codes, in [0, {n}), where base and slot read them")
    # Written so that NaN fails too.
    if not (gap_f.min() >= 0 and gap_f.max() < 1):
        raise ValueError(f"gap must be in [0, 1) as float32, got values in [{gap_f.min()}, {gap_f.max()}]")
    if m * d <= SMALL_SIZE:
        _interpolate_numpy(x, nbrs, base_i, slot_i, gap_f, out)
        return out
    from .interpolate_numba import interpolate_into

    threads.apply_pending()
    interpolate_into(x, nbrs, base_i, slot_i, gap_f, out)
    return out


def _interpolate_numpy(
    codes: np.ndarray, neighbors: np.ndarray, base: np.ndarray, slot: np.ndarray, gap: np.ndarray, out: np.ndarray
) -> None:
    """The numpy path of `interpolate`, on its checked arguments: writes out, float32 (m, d)."""
    z_base = codes[base]
    np.add(z_base, gap[:, None] * (codes[neighbors[base, slot]] - z_base), out=out)
