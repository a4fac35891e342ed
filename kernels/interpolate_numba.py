"""The numba path of `deepsmote.kernels.interpolate`, for outputs above its ``SMALL_SIZE`` values.

Imported only when such an output is asked for, so that small jobs never import numba.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["interpolate_into"]


@nb.njit(parallel=True, cache=True)
def interpolate_into(
    codes: np.ndarray,
    neighbors: np.ndarray,
    base: np.ndarray,
    slot: np.ndarray,
    gap: np.ndarray,
    out: np.ndarray,
) -> None:
    """out[r] = codes[base[r]] + gap[r] * (codes[nb] - codes[base[r]]), nb = neighbors[base[r], slot[r]].

    Arguments are checked by `deepsmote.kernels.interpolate`: codes float32 (n, d), neighbors int64
    (n, k), base and slot int64 (m,), gap float32 (m,), out float32 (m, d), all C-contiguous.
    """
    d = codes.shape[1]
    for r in nb.prange(out.shape[0]):
        z_base = codes[base[r]]
        z_nb = codes[neighbors[base[r], slot[r]]]
        u = gap[r]
        row = out[r]
        # Same three float32 operations, in the same order, as the numpy expression in the docstring
        # of `interpolate`; numba does not fuse them into an FMA without fastmath.
        for c in range(d):
            row[c] = z_base[c] + u * (z_nb[c] - z_base[c])
