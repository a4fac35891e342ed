"""deepsmote.kernels.winograd: the F(m, r) matrices, and the tile transforms against naive.py's references."""

from __future__ import annotations

import naive
import numba
import numpy as np
import pytest
from deepsmote.kernels.winograd import (
    input_tiling,
    input_transform,
    input_transform_adjoint,
    output_tiling,
    output_transform,
    output_transform_adjoint,
    tile_counts,
    winograd_matrices,
)


@pytest.mark.parametrize(("m", "r"), [(1, 1), (2, 3), (4, 3), (2, 4), (4, 4), (5, 4), (6, 3), (3, 2)])
def test_the_matrices_compute_a_valid_correlation(m, r):
    f = winograd_matrices(m, r)
    assert f.at.shape == (m, m + r - 1) and f.g.shape == (m + r - 1, r) and f.bt.shape == (m + r - 1,) * 2
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        winograd = f.at.astype(np.float64) @ ((f.g.astype(np.float64) @ g) * (f.bt.astype(np.float64) @ d))
        np.testing.assert_allclose(winograd, np.correlate(d, g, mode="valid"), rtol=1e-6, atol=1e-6)


def test_f23_has_lavins_transform_of_the_data():
    # Lavin and Gray's F(2, 3) on the points 0, 1, -1: B^T is their matrix up to the signs of its rows.
    lavin = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    np.testing.assert_array_equal(np.abs(winograd_matrices(2, 3).bt), np.abs(lavin))


def test_too_many_points_are_refused():
    with pytest.raises(ValueError, match="m \\+ r - 1 <= 8"):
        winograd_matrices(6, 4)


# (N, H, W, C, m, r): the paper decoder's two layers at small widths, odd sizes, one channel, one pixel.
SHAPES = [(2, 7, 7, 16, 5, 4), (3, 10, 10, 8, 5, 4), (1, 5, 9, 3, 4, 3), (2, 1, 1, 1, 5, 4), (1, 4, 6, 33, 2, 3)]


def full_problem(shape, seed=0):
    n_images, height, width, channels, m, r = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_images, height, width, channels)).astype(np.float32)
    return x, winograd_matrices(m, r), r - 1, (height + r - 1, width + r - 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_input_transform_matches_numpy(shape):
    x, f, pad, out_hw = full_problem(shape)
    tiles = input_transform(x, f, pad, out_hw)
    assert tiles.dtype == np.float32 and tiles.flags.c_contiguous
    np.testing.assert_allclose(tiles, naive.winograd_input_tiles(x, f.bt, f.outputs, pad, out_hw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_output_transform_matches_numpy(shape):
    x, f, pad, out_hw = full_problem(shape)
    shape_of_tiles = input_transform(x, f, pad, out_hw).shape
    products = np.random.default_rng(2).standard_normal(shape_of_tiles).astype(np.float32)
    out = output_transform(products, f, x.shape[0], out_hw)
    assert out.shape == (x.shape[0], *out_hw, x.shape[3]) and out.dtype == np.float32
    np.testing.assert_allclose(
        out, naive.winograd_output_tiles(products, f.at, x.shape[0], out_hw), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_the_tilings_are_the_transforms_along_each_side_as_one_matrix(shape):
    x, f, pad, out_hw = full_problem(shape)
    n_images, height, width, channels = x.shape
    (tiles_h, tiles_w), n = tile_counts(*out_hw, f.outputs), f.tile
    rows, cols = input_tiling(height, f, pad, out_hw[0]), input_tiling(width, f, pad, out_hw[1])
    assert rows.shape == (n * tiles_h, height) and cols.shape == (n * tiles_w, width) and rows.dtype == np.float32
    tiles = np.einsum("ph,khwc,qw->kpqc", rows.astype(np.float64), x, cols.astype(np.float64))
    # Row a * T + t is sample a of tile t: regroup to (a, b) by (image, t, u), the transforms' order.
    tiles = tiles.reshape(n_images, n, tiles_h, n, tiles_w, channels).transpose(1, 3, 0, 2, 4, 5)
    expected = naive.winograd_input_tiles(x, f.bt, f.outputs, pad, out_hw)
    np.testing.assert_allclose(tiles.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
    products = np.random.default_rng(3).standard_normal(expected.shape)
    out_rows, out_cols = output_tiling(f, out_hw[0]), output_tiling(f, out_hw[1])
    assert out_rows.shape == (out_hw[0], n * tiles_h) and out_cols.shape == (out_hw[1], n * tiles_w)
    grouped = products.reshape(n, n, n_images, tiles_h, tiles_w, -1).transpose(2, 0, 3, 1, 4, 5)
    grouped = grouped.reshape(n_images, n * tiles_h, n * tiles_w, -1)
    out = np.einsum("yp,kpqc,xq->kyxc", out_rows.astype(np.float64), grouped, out_cols.astype(np.float64))
    expected_out = naive.winograd_output_tiles(products, f.at, n_images, out_hw)
    np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_adjoints_are_the_transposed_maps(shape):
    # <T x, y> = <x, T' y> for random x and y, in float64, for both transforms.
    x, f, pad, out_hw = full_problem(shape)
    rng = np.random.default_rng(1)
    tiles = input_transform(x, f, pad, out_hw)
    grad_tiles = rng.standard_normal(tiles.shape).astype(np.float32)
    back = input_transform_adjoint(grad_tiles, f, pad, out_hw, x.shape)
    assert back.shape == x.shape
    np.testing.assert_allclose((tiles.astype(float) * grad_tiles).sum(), (x.astype(float) * back).sum(), rtol=1e-5)
    out = output_transform(tiles, f, x.shape[0], out_hw)
    grad_out = rng.standard_normal(out.shape).astype(np.float32)
    back = output_transform_adjoint(grad_out, f)
    assert back.shape == tiles.shape
    np.testing.assert_allclose((out.astype(float) * grad_out).sum(), (tiles.astype(float) * back).sum(), rtol=1e-5)


def test_the_bytes_do_not_depend_on_the_thread_count():
    x, f, pad, out_hw = full_problem((4, 7, 7, 40, 5, 4))
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        tiles = input_transform(x, f, pad, out_hw)
        results.append(
            [
                tiles.tobytes(),
                input_transform_adjoint(tiles, f, pad, out_hw, x.shape).tobytes(),
                (out := output_transform(tiles, f, x.shape[0], out_hw)).tobytes(),
                output_transform_adjoint(out, f).tobytes(),
            ]
        )
    assert results[0] == results[1]


def test_bad_arrays_are_refused():
    x, f, pad, out_hw = full_problem(SHAPES[0])
    with pytest.raises(ValueError, match="float32 array \\(N, H, W, C\\)"):
        input_transform(x.astype(np.float64), f, pad, out_hw)
    with pytest.raises(ValueError, match="C-contiguous"):
        input_transform(x.transpose(0, 2, 1, 3), f, pad, out_hw)
    tiles = input_transform(x, f, pad, out_hw)
    with pytest.raises(ValueError, match="expected \\(64, 8, C\\)"):
        output_transform(tiles[:, :5].copy(), f, x.shape[0], out_hw)
    with pytest.raises(ValueError, match="expected \\(64, 8, C\\)"):
        input_transform_adjoint(tiles[:, :5].copy(), f, pad, out_hw, x.shape)
