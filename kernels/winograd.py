"""Winograd's minimal filtering F(m, r): its matrices and the tile transforms of a 2-D convolution.

A valid correlation of an ``n = m + r - 1`` sample tile ``d`` with an ``r`` tap kernel ``g`` gives
``m`` outputs as ``A^T [(G g) * (B^T d)]`` (Lavin and Gray, "Fast Algorithms for Convolutional
Neural Networks", CVPR 2016), and in two dimensions ``A^T [(G g G^T) * (B^T d B)] A``: the products
of a layer become ``n * n`` matrix products over (tiles x input channels) by (input x output
channels), ``(m + r - 1)^2 / (m^2 r^2)`` of the direct convolution's multiply-adds. The matrices
come from the Toom-Cook construction on the points ``0, 1, -1, 2, -2, 1/2, -1/2, ...`` and
infinity, the set whose float32 error stays smallest (Barabasz et al., "Error Analysis and
Improving the Accuracy of Winograd Convolution for Deep Neural Networks", ACM TOMS 2020).

`input_transform` cuts a zero-padded map into overlapping ``n x n`` tiles (stride ``m``) and
applies ``B^T . B`` to each; `output_transform` applies ``A^T . A`` to each tile of products and
lays the ``m x m`` results out as a map. Both have adjoints for the backward pass. Maps are
float32 (N, H, W, C), channels last; transformed tiles float32 (n * n, tiles, C). All four run in
numba (imported on first use) and raise plain ``ValueError`` on bad input.

`input_tiling` and `output_tiling` give the same transforms along one side of a map as one matrix
each (the tiles' overlap, the padding and the crop included), so that a graph of plain matrix
products computes them: the runtime's CPU decoder (``decoder_cpu.onnx``) of the 28x28 paper model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .threads import apply_pending

__all__ = [
    "WinogradMatrices",
    "input_tiling",
    "input_transform",
    "input_transform_adjoint",
    "output_tiling",
    "output_transform",
    "output_transform_adjoint",
    "winograd_matrices",
]

_POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2))


@dataclass(frozen=True)
class WinogradMatrices:
    """F(m, r)'s matrices, float32: ``at`` (m, n), ``g`` (n, r), ``bt`` (n, n), ``n = m + r - 1``."""

    at: np.ndarray
    g: np.ndarray
    bt: np.ndarray

    @functools.cached_property
    def a(self) -> np.ndarray:
        """A (n, m), C-contiguous: the output transform as the tile kernels take it (made once)."""
        return np.ascontiguousarray(self.at.T)

    @property
    def outputs(self) -> int:
        """m, the outputs per tile side."""
        return self.at.shape[0]

    @property
    def tile(self) -> int:
        """n, the tile side."""
        return self.bt.shape[0]


@functools.cache
def winograd_matrices(outputs: int, taps: int) -> WinogradMatrices:
    """The matrices of F(``outputs``, ``taps``), computed exactly in rationals, then rounded to float32.

    ``A^T`` and ``G`` are the Toom-Cook evaluation matrices on the first ``outputs + taps - 2``
    points of ``0, 1, -1, 2, -2, 1/2, -1/2`` and infinity; ``B^T`` is the one matrix that makes
    ``A^T [(G g) * (B^T d)]`` the valid correlation of ``d`` with ``g``, solved exactly.

    Raises
    ------
    ValueError
        If there are not enough points (``outputs + taps - 1 > 8``) or either size is below 1.
    """
    n = outputs + taps - 1
    if outputs < 1 or taps < 1 or n - 1 > len(_POINTS):
        raise ValueError(f"F({outputs}, {taps}) needs 1 <= m, r and m + r - 1 <= {len(_POINTS) + 1}")
    points = _POINTS[: n - 1]
    at = [[x**i for x in points] + [Fraction(int(i == outputs - 1))] for i in range(outputs)]
    scale = [math.prod((x - y for y in points if y != x), start=Fraction(1)) for x in points]
    g = [[x**k / f for k in range(taps)] for x, f in zip(points, scale, strict=True)]
    g.append([Fraction(int(k == taps - 1)) for k in range(taps)])
    bt = _solve_bt(at, g, outputs, taps)
    return WinogradMatrices(*(np.array(mat, dtype=np.float64).astype(np.float32) for mat in (at, g, bt)))


def _solve_bt(at: list[list[Fraction]], g: list[list[Fraction]], m: int, r: int) -> list[list[Fraction]]:
    """``B^T`` column by column: for sample a, Σ_j at[i][j] g[j][b] bt[j][a] = [a == i + b] for every i, b."""
    n = m + r - 1
    rows = [[at[i][j] * g[j][b] for j in range(n)] for i in range(m) for b in range(r)]
    columns = []
    for a in range(n):
        rhs = [Fraction(int(a == i + b)) for i in range(m) for b in range(r)]
        columns.append(_exact_solve(rows, rhs))
    return [[columns[a][j] for a in range(n)] for j in range(n)]


def _exact_solve(rows: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """The solution of the consistent system ``rows x = rhs`` (more equations than unknowns), by elimination."""
    width = len(rows[0])
    system = [[*row, value] for row, value in zip(rows, rhs, strict=True)]
    pivot_rows: list[int] = []
    for col in range(width):
        pivot = next((i for i in range(len(system)) if i not in pivot_rows and system[i][col] != 0), None)
        if pivot is None:
            raise ValueError("Winograd points give a singular system")
        pivot_rows.append(pivot)
        lead = system[pivot][col]
        system[pivot] = [v / lead for v in system[pivot]]
        for i in range(len(system)):
            if i != pivot and system[i][col] != 0:
                factor = system[i][col]
                system[i] = [v - factor * p for v, p in zip(system[i], system[pivot], strict=True)]
    if any(system[i][-1] != 0 for i in range(len(system)) if i not in pivot_rows):
        raise ValueError("Winograd points give an inconsistent system")
    return [system[pivot_rows[col]][-1] for col in range(width)]


def tile_counts(out_h: int, out_w: int, outputs: int) -> tuple[int, int]:
    """Tiles along each side to cover an ``out_h x out_w`` output with ``outputs x outputs`` tiles."""
    return -(-out_h // outputs), -(-out_w // outputs)


def input_tiling(side: int, matrices: WinogradMatrices, pad: int, out_side: int) -> np.ndarray:
    """`input_transform` along one side of a map as one matrix: ``B^T`` of every tile, placed.

    Parameters
    ----------
    side : int
        The map's side (H or W), before padding.
    matrices : WinogradMatrices
    pad : int
        Zero samples before the map, as `input_transform`'s.
    out_side : int
        The valid output's side the tiles cover, as `input_transform`'s ``out_hw``.

    Returns
    -------
    np.ndarray
        float32, shape (n * T, side), T = ceil(out_side / m) tiles: row ``a * T + t`` is sample a of
        tile t's ``B^T d``. For a map X (H, W), ``P_H X P_W^T`` holds `input_transform`'s tile
        (a, b) of tile (t, u) at [a * T + t, b * U + u].
    """
    n, m = matrices.tile, matrices.outputs
    tiles = tile_counts(out_side, out_side, m)[0]
    out = np.zeros((n * tiles, side), dtype=np.float32)
    for t in range(tiles):
        for h in range(n):
            # Sample h of tile t is padded position m t + h, map position m t + h - pad (zero outside).
            x = m * t + h - pad
            if 0 <= x < side:
                out[t::tiles, x] = matrices.bt[:, h]
    return out


def output_tiling(matrices: WinogradMatrices, out_side: int) -> np.ndarray:
    """`output_transform` along one side as one matrix: ``A^T`` of every tile, placed and cropped.

    Returns
    -------
    np.ndarray
        float32, shape (out_side, n * T), T = ceil(out_side / m): for tiles of products M indexed
        as `input_tiling`'s rows, ``Q_H M Q_W^T`` is `output_transform`'s map.
    """
    n, m = matrices.tile, matrices.outputs
    tiles = tile_counts(out_side, out_side, m)[0]
    out = np.zeros((out_side, n * tiles), dtype=np.float32)
    for t in range(tiles):
        for i in range(min(m, out_side - m * t)):
            out[m * t + i, t::tiles] = matrices.at[i]
    return out


def _check_map(name: str, array: np.ndarray) -> None:
    if array.dtype != np.float32 or array.ndim != 4 or not array.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous float32 array (N, H, W, C), got {array.dtype} {array.shape}")


def _check_tiles(name: str, array: np.ndarray, n: int, tiles: int) -> None:
    if array.dtype != np.float32 or array.ndim != 3 or not array.flags.c_contiguous:
        raise ValueError(
            f"{name} must be a C-contiguous float32 array (n*n, tiles, C), got {array.dtype} {array.shape}"
        )
    if array.shape[:2] != (n * n, tiles):
        raise ValueError(f"{name} has shape {array.shape}; expected ({n * n}, {tiles}, C)")


def input_transform(x: np.ndarray, matrices: WinogradMatrices, pad: int, out_hw: tuple[int, int]) -> np.ndarray:
    """The tiles ``B^T d B`` of ``x`` padded by ``pad`` zeros, covering an ``out_hw`` valid output.

    Parameters
    ----------
    x : np.ndarray
        float32, shape (N, H, W, C), C-contiguous.
    matrices : WinogradMatrices
    pad : int
        Zero rows and columns before the map (and as many after as the tiles reach).
    out_hw : (int, int)
        The output's height and width, at most ``H + 2 pad - r + 1`` each.

    Returns
    -------
    np.ndarray
        float32, shape (n * n, N * T * U, C), T x U tiles per image (`tile_counts`), numbered
        (image, tile row, tile column).
    """
    _check_map("x", x)
    tiles_h, tiles_w = tile_counts(*out_hw, matrices.outputs)
    out = np.empty((matrices.tile**2, x.shape[0] * tiles_h * tiles_w, x.shape[3]), dtype=np.float32)
    apply_pending()
    from .winograd_numba import tiles

    tiles(x, matrices.bt, matrices.outputs, pad, tiles_h, tiles_w, out)
    return out


def input_transform_adjoint(
    grad: np.ndarray, matrices: WinogradMatrices, pad: int, out_hw: tuple[int, int], x_shape: tuple[int, ...]
) -> np.ndarray:
    """The gradient of `input_transform`'s ``x`` from its tiles' gradient ``grad``, float32 ``x_shape``."""
    tiles_h, tiles_w = tile_counts(*out_hw, matrices.outputs)
    _check_tiles("grad", grad, matrices.tile, x_shape[0] * tiles_h * tiles_w)
    out = np.empty(x_shape, dtype=np.float32)
    apply_pending()
    from .winograd_numba import untiles

    untiles(grad, matrices.bt, matrices.outputs, pad, tiles_h, tiles_w, out)
    return out


def output_transform(
    products: np.ndarray, matrices: WinogradMatrices, n_images: int, out_hw: tuple[int, int]
) -> np.ndarray:
    """The map of ``A^T M A`` over each tile of ``products``, cropped to ``out_hw``.

    Parameters
    ----------
    products : np.ndarray
        float32, shape (n * n, n_images * T * U, K), C-contiguous.

    Returns
    -------
    np.ndarray
        float32, shape (n_images, out_h, out_w, K).
    """
    tiles_h, tiles_w = tile_counts(*out_hw, matrices.outputs)
    _check_tiles("products", products, matrices.tile, n_images * tiles_h * tiles_w)
    out = np.empty((n_images, *out_hw, products.shape[2]), dtype=np.float32)
    apply_pending()
    from .winograd_numba import untiles

    # A^T M A placed in non-overlapping m x m windows: `untiles` with mat = A (n x m) at a stride of m.
    untiles(products, matrices.a, matrices.outputs, 0, tiles_h, tiles_w, out)
    return out


def output_transform_adjoint(grad: np.ndarray, matrices: WinogradMatrices) -> np.ndarray:
    """The gradient of `output_transform`'s products from the map's gradient ``grad`` (N, Ho, Wo, K)."""
    _check_map("grad", grad)
    tiles_h, tiles_w = tile_counts(grad.shape[1], grad.shape[2], matrices.outputs)
    out = np.empty((matrices.tile**2, grad.shape[0] * tiles_h * tiles_w, grad.shape[3]), dtype=np.float32)
    apply_pending()
    from .winograd_numba import tiles

    tiles(grad, matrices.a, matrices.outputs, 0, tiles_h, tiles_w, out)
    return out
