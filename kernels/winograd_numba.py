"""The numba path of `deepsmote.kernels.winograd`: the tile transforms of a Winograd convolution.

Two kernels, each the other's adjoint: `tiles` cuts a map into w x w windows at a stride and
applies ``mat . mat^T`` to each (q x q values per window), `untiles` applies ``mat^T . mat`` to
each tile and adds the results into the map. With ``mat = B^T`` (n x n) and overlapping windows they
are the input transform and its adjoint; with ``mat = A`` (n x m, the transpose of ``A^T``) and
windows of m at a stride of m, `untiles` is the output transform and `tiles` its adjoint.

Each works on one tile at a time, with the channels innermost (contiguous in both the maps and the
tiles), so numba vectorises the loops over channels. Every output element is written by one thread
only: `tiles` runs over tiles, `untiles` (whose windows may overlap) over images. The sums run in
a fixed order, so the bytes do not depend on the thread count.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["tiles", "untiles"]


@nb.njit(inline="always", cache=True)
def _axpy(dst: np.ndarray, coef: np.float32, src: np.ndarray) -> None:
    """dst += coef * src over the channels: the one inner loop of every transform (vectorised)."""
    for c in range(dst.shape[0]):
        dst[c] += coef * src[c]


@nb.njit(parallel=True, cache=True)
def tiles(x: np.ndarray, mat: np.ndarray, step: int, pad: int, tiles_h: int, tiles_w: int, out: np.ndarray) -> None:
    """out[p * q + s, tile, c] = Σ_ab mat[p, a] mat[s, b] x_padded[img, t * step + a, u * step + b, c].

    x float32 (N, H, W, C); mat float32 (q, w); out float32 (q * q, N * tiles_h * tiles_w, C), tiles
    numbered (img, t, u) row-major; x_padded is x with ``pad`` zero rows and columns before it and
    as many after as the windows reach.
    """
    n_images, height, width, channels = x.shape
    q, window = mat.shape
    for tile in nb.prange(n_images * tiles_h * tiles_w):
        img, t, u = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
        rows = np.zeros((q, window, channels), dtype=np.float32)
        for a in range(window):
            h = t * step + a - pad
            if 0 <= h < height:
                for b in range(window):
                    w = u * step + b - pad
                    if 0 <= w < width:
                        pixel = x[img, h, w]
                        for p in range(q):
                            _axpy(rows[p, b], mat[p, a], pixel)
        for p in range(q):
            for s in range(q):
                dst = out[p * q + s, tile]
                dst[:] = 0
                for b in range(window):
                    _axpy(dst, mat[s, b], rows[p, b])


@nb.njit(parallel=True, cache=True)
def untiles(
    values: np.ndarray, mat: np.ndarray, step: int, pad: int, tiles_h: int, tiles_w: int, out: np.ndarray
) -> None:
    """The adjoint of `tiles`: out (N, H, W, C) = Σ over the tiles of ``mat^T . mat`` of each, placed back.

    values float32 (q * q, N * tiles_h * tiles_w, C); out float32 (N, H, W, C), overwritten; what
    falls in the padding is dropped.
    """
    n_images, height, width, channels = out.shape
    q, window = mat.shape
    for img in nb.prange(n_images):
        out[img] = 0
        rows = np.empty((q, window, channels), dtype=np.float32)
        for t in range(tiles_h):
            for u in range(tiles_w):
                tile = (img * tiles_h + t) * tiles_w + u
                # rows[p, b] = Σ_s mat[s, b] values[p * q + s]
                rows[:] = 0
                for p in range(q):
                    for s in range(q):
                        src = values[p * q + s, tile]
                        for b in range(window):
                            _axpy(rows[p, b], mat[s, b], src)
                for a in range(window):
                    h = t * step + a - pad
                    if 0 <= h < height:
                        for b in range(window):
                            w = u * step + b - pad
                            if 0 <= w < width:
                                pixel = out[img, h, w]
                                for p in range(q):
                                    _axpy(pixel, mat[p, a], rows[p, b])
