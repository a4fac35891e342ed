"""The numba path of `deepsmote.kernels.winograd`: the tile transforms of a Winograd convolution.

Each kernel works on one tile at a time, with the channels innermost (contiguous in both the maps
and the transformed tiles), so numba vectorises the loops over channels. Every output element is
written by one thread only: the tile transforms and the output side run over tiles, the adjoint of
the input transform (whose tiles overlap) over images. The sums run in a fixed order, so the bytes
do not depend on the thread count.

Internal module: use the public names of :mod:`deepsmote.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["input_tiles", "input_tiles_adjoint", "output_tiles", "output_tiles_adjoint"]


@nb.njit(inline="always", cache=True)
def _axpy(dst: np.ndarray, coef: np.float32, src: np.ndarray) -> None:
    """dst += coef * src over the channels: the one inner loop of every transform (vectorised)."""
    for c in range(dst.shape[0]):
        dst[c] += coef * src[c]


@nb.njit(parallel=True, cache=True)
def input_tiles(
    x: np.ndarray, bt: np.ndarray, step: int, pad: int, tiles_h: int, tiles_w: int, out: np.ndarray
) -> None:
    """out[p * n + s, tile, c] = Σ_ab bt[p, a] bt[s, b] x_padded[img, t * step + a, u * step + b, c].

    x float32 (N, H, W, C); bt float32 (n, n); out float32 (n * n, N * tiles_h * tiles_w, C), tiles
    numbered (img, t, u) row-major; x_padded is x with ``pad`` zero rows and columns before it and
    as many after as the tiles reach.
    """
    n_images, height, width, channels = x.shape
    n = bt.shape[0]
    for tile in nb.prange(n_images * tiles_h * tiles_w):
        img, t, u = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
        rows = np.zeros((n, n, channels), dtype=np.float32)
        for a in range(n):
            h = t * step + a - pad
            if 0 <= h < height:
                for b in range(n):
                    w = u * step + b - pad
                    if 0 <= w < width:
                        pixel = x[img, h, w]
                        for p in range(n):
                            _axpy(rows[p, b], bt[p, a], pixel)
        for p in range(n):
            for s in range(n):
                dst = out[p * n + s, tile]
                dst[:] = 0
                for b in range(n):
                    _axpy(dst, bt[s, b], rows[p, b])


@nb.njit(parallel=True, cache=True)
def input_tiles_adjoint(
    grad_tiles: np.ndarray, bt: np.ndarray, step: int, pad: int, tiles_h: int, tiles_w: int, out: np.ndarray
) -> None:
    """The adjoint of `input_tiles`: out (N, H, W, C) = the gradient of x from the tiles' gradient.

    grad_tiles float32 (n * n, N * tiles_h * tiles_w, C); out float32 (N, H, W, C), overwritten.
    """
    n_images, height, width, channels = out.shape
    n = bt.shape[0]
    for img in nb.prange(n_images):
        out[img] = 0
        rows = np.empty((n, n, channels), dtype=np.float32)
        for t in range(tiles_h):
            for u in range(tiles_w):
                tile = (img * tiles_h + t) * tiles_w + u
                # rows[p, b] = Σ_s bt[s, b] grad[p * n + s]
                rows[:] = 0
                for p in range(n):
                    for s in range(n):
                        src = grad_tiles[p * n + s, tile]
                        for b in range(n):
                            _axpy(rows[p, b], bt[s, b], src)
                for a in range(n):
                    h = t * step + a - pad
                    if 0 <= h < height:
                        for b in range(n):
                            w = u * step + b - pad
                            if 0 <= w < width:
                                pixel = out[img, h, w]
                                for p in range(n):
                                    _axpy(pixel, bt[p, a], rows[p, b])


@nb.njit(parallel=True, cache=True)
def output_tiles(products: np.ndarray, at: np.ndarray, tiles_h: int, tiles_w: int, out: np.ndarray) -> None:
    """out[img, t * m + i, u * m + j, k] = Σ_ps at[i, p] at[j, s] products[p * n + s, tile, k], cropped.

    products float32 (n * n, N * tiles_h * tiles_w, K); at float32 (m, n); out float32
    (N, Ho, Wo, K) with Ho <= tiles_h * m and Wo <= tiles_w * m: the tiles' rows and columns past
    it are dropped.
    """
    n_images, out_h, out_w, channels = out.shape
    m, n = at.shape
    for tile in nb.prange(n_images * tiles_h * tiles_w):
        img, t, u = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
        rows = np.zeros((m, n, channels), dtype=np.float32)
        for p in range(n):
            for s in range(n):
                src = products[p * n + s, tile]
                for i in range(m):
                    _axpy(rows[i, s], at[i, p], src)
        for i in range(m):
            h = t * m + i
            if h < out_h:
                for j in range(m):
                    w = u * m + j
                    if w < out_w:
                        dst = out[img, h, w]
                        dst[:] = 0
                        for s in range(n):
                            _axpy(dst, at[j, s], rows[i, s])


@nb.njit(parallel=True, cache=True)
def output_tiles_adjoint(grad: np.ndarray, at: np.ndarray, tiles_h: int, tiles_w: int, out: np.ndarray) -> None:
    """The adjoint of `output_tiles`: out (n * n, N * tiles_h * tiles_w, K) from grad (N, Ho, Wo, K)."""
    n_images, out_h, out_w, channels = grad.shape
    m, n = at.shape
    for tile in nb.prange(n_images * tiles_h * tiles_w):
        img, t, u = tile // (tiles_h * tiles_w), (tile // tiles_w) % tiles_h, tile % tiles_w
        rows = np.zeros((m, n, channels), dtype=np.float32)
        for i in range(m):
            h = t * m + i
            if h < out_h:
                for j in range(m):
                    w = u * m + j
                    if w < out_w:
                        pixel = grad[img, h, w]
                        for s in range(n):
                            _axpy(rows[i, s], at[j, s], pixel)
        for p in range(n):
            for s in range(n):
                dst = out[p * n + s, tile]
                dst[:] = 0
                for i in range(m):
                    _axpy(dst, at[i, p], rows[i, s])
