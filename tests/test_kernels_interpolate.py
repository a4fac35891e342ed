"""deepsmote.kernels.interpolate against the numpy reference in naive.py, on both of its paths."""

from __future__ import annotations

import importlib
import sys

import naive
import numba
import numpy as np
import pytest
from deepsmote.kernels import interpolate, interpolate_numba

# The package's `interpolate` attribute is the function; its module is reached by name.
interpolate_module = importlib.import_module("deepsmote.kernels.interpolate")


@pytest.fixture(params=["numpy", "numba"])
def interpolate_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Send every call down one path of `interpolate`, whatever its size; the other path fails the test."""

    def other_path(*args: object) -> None:
        raise AssertionError(f"interpolate left the {request.param} path")

    if request.param == "numpy":
        monkeypatch.setattr(interpolate_module, "SMALL_SIZE", sys.maxsize)
        monkeypatch.setattr(interpolate_numba, "interpolate_into", other_path)
    else:
        monkeypatch.setattr(interpolate_module, "SMALL_SIZE", -1)
        monkeypatch.setattr(interpolate_module, "_interpolate_numpy", other_path)
    return request.param


def draws(n: int, k: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base rows, neighbour slots and gaps as the runtime draws them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=m), rng.integers(0, k, size=m), rng.random(m, dtype=np.float32)


def problem(n: int, d: int, k: int, m: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed + 1000)
    codes = rng.standard_normal((n, d)).astype(np.float32)
    neighbors = rng.integers(0, n, size=(n, k))
    return (codes, neighbors, *draws(n, k, m, seed))


@pytest.mark.parametrize(("n", "d", "k", "m"), [(2, 1, 1, 1), (3, 5, 2, 7), (50, 16, 5, 1000), (400, 300, 5, 3001)])
def test_matches_numpy(interpolate_path: str, n: int, d: int, k: int, m: int) -> None:
    codes, neighbors, base, slot, gap = problem(n, d, k, m, seed=n)
    z = interpolate(codes, neighbors, base, slot, gap)
    assert z.dtype == np.float32 and z.shape == (m, d) and z.flags.c_contiguous
    assert z.tobytes() == naive.interpolate(codes, neighbors, base, slot, gap).tobytes()


def test_endpoints(interpolate_path: str) -> None:
    # gap 0 gives the base code itself; a gap just below 1 lands next to the neighbour.
    codes, neighbors, base, slot, _ = problem(20, 8, 3, 50, seed=1)
    z0 = interpolate(codes, neighbors, base, slot, np.zeros(50, dtype=np.float32))
    np.testing.assert_array_equal(z0, codes[base])
    near_one = np.full(50, np.nextafter(np.float32(1), np.float32(0)))
    z1 = interpolate(codes, neighbors, base, slot, near_one)
    np.testing.assert_allclose(z1, codes[neighbors[base, slot]], atol=1e-6)


def test_accepts_other_integer_and_float_dtypes(interpolate_path: str) -> None:
    codes, neighbors, base, slot, gap = problem(30, 4, 3, 100, seed=2)
    expected = interpolate(codes, neighbors, base, slot, gap)
    got = interpolate(
        codes.astype(np.float64), neighbors.astype(np.int32), base.astype(np.uint16), slot.astype(np.int8), gap
    )
    np.testing.assert_array_equal(got, expected)


def test_writes_into_out(interpolate_path: str) -> None:
    codes, neighbors, base, slot, gap = problem(30, 4, 3, 100, seed=3)
    out = np.full((100, 4), np.nan, dtype=np.float32)
    assert interpolate(codes, neighbors, base, slot, gap, out=out) is out
    np.testing.assert_array_equal(out, interpolate(codes, neighbors, base, slot, gap))


def test_no_draws_gives_empty_rows(interpolate_path: str) -> None:
    codes, neighbors, *_ = problem(5, 3, 2, 0, seed=4)
    empty = np.empty(0, dtype=np.int64)
    z = interpolate(codes, neighbors, empty, empty, np.empty(0, dtype=np.float32))
    assert z.shape == (0, 3) and z.dtype == np.float32


def test_same_bytes_for_any_thread_count(interpolate_path: str) -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    codes, neighbors, base, slot, gap = problem(300, 64, 5, 20_000, seed=5)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = interpolate(codes, neighbors, base, slot, gap)
        numba.set_num_threads(2)
        two = interpolate(codes, neighbors, base, slot, gap)
    finally:
        numba.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


N, D, K, M = 6, 3, 2, 4
CODES = np.arange(N * D, dtype=np.float32).reshape(N, D)
NEIGHBORS = np.array([[1, 2], [0, 2], [1, 3], [2, 4], [3, 5], [4, 3]])
BASE = np.array([0, 1, 5, 2])
SLOT = np.array([0, 1, 1, 0])
GAP = np.array([0.0, 0.5, 0.25, 0.75], dtype=np.float32)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"codes": CODES[0]}, "codes must be 2-D"),
        ({"neighbors": NEIGHBORS[:-1]}, r"neighbors must be an integer array of shape \(6, k\)"),
        ({"neighbors": NEIGHBORS.astype(np.float32)}, "neighbors must be an integer array"),
        ({"neighbors": NEIGHBORS.ravel()}, "neighbors must be an integer array"),
        ({"neighbors": np.where(NEIGHBORS == 3, 6, NEIGHBORS)}, r"neighbors must index rows of codes, in \[0, 6\)"),
        ({"neighbors": np.where(NEIGHBORS == 3, -1, NEIGHBORS)}, "neighbors must index rows of codes"),
        ({"base": BASE.astype(np.float64)}, "base must be a 1-D integer array"),
        ({"base": BASE[:, None]}, "base must be a 1-D integer array"),
        ({"base": np.array([0, 1, 6, 2])}, r"base must be in \[0, 6\)"),
        ({"base": np.array([0, -1, 5, 2])}, r"base must be in \[0, 6\)"),
        ({"slot": np.array([0, 2, 1, 0])}, r"slot must be in \[0, 2\)"),
        ({"slot": np.array([0, -1, 1, 0])}, r"slot must be in \[0, 2\)"),
        ({"slot": SLOT[:3]}, "base, slot and gap must have the same length"),
        ({"gap": GAP[:3]}, "base, slot and gap must have the same length"),
        ({"gap": np.array([0, 1, 0, 0])}, "gap must be a 1-D float array"),
        ({"gap": np.array([0.0, 1.0, 0.5, 0.5], dtype=np.float32)}, r"gap must be in \[0, 1\)"),
        ({"gap": np.array([0.0, -0.1, 0.5, 0.5], dtype=np.float32)}, r"gap must be in \[0, 1\)"),
        ({"gap": np.array([0.0, np.nan, 0.5, 0.5], dtype=np.float32)}, r"gap must be in \[0, 1\)"),
        # Below 1 in float64 but rounds to 1 in float32.
        ({"gap": np.array([0.0, 1 - 1e-9, 0.5, 0.5])}, r"gap must be in \[0, 1\) as float32"),
        ({"gap": np.array([0.0, 1e39, 0.5, 0.5])}, r"gap must be in \[0, 1\)"),
        ({"out": np.empty((M, D), dtype=np.float64)}, "out must be a C-contiguous float32 array"),
        ({"out": np.empty((M, D + 1), dtype=np.float32)}, r"out must be .* of shape \(4, 3\)"),
        ({"out": np.empty((D, M), dtype=np.float32).T}, "out must be a C-contiguous"),
    ],
)
@pytest.mark.filterwarnings("error")
def test_rejects_bad_input(interpolate_path: str, change: dict[str, np.ndarray], match: str) -> None:
    args = {"codes": CODES, "neighbors": NEIGHBORS, "base": BASE, "slot": SLOT, "gap": GAP} | change
    with pytest.raises(ValueError, match=match):
        interpolate(**args)


def test_rows_no_base_draws_are_not_read(interpolate_path: str) -> None:
    # A table found on demand holds -1 in the rows of codes no base drew (row 3 and 4 here).
    partial = NEIGHBORS.copy()
    partial[[3, 4]] = -1
    z = interpolate(CODES, partial, BASE, SLOT, GAP)
    assert z.tobytes() == interpolate(CODES, NEIGHBORS, BASE, SLOT, GAP).tobytes()


def test_valid_small_case_by_hand(interpolate_path: str) -> None:
    z = interpolate(CODES, NEIGHBORS, BASE, SLOT, GAP)
    # Row 1: base 1 = [3, 4, 5], neighbour slot 1 → row 2 = [6, 7, 8], halfway.
    np.testing.assert_array_equal(z[1], [4.5, 5.5, 6.5])
    np.testing.assert_array_equal(z, naive.interpolate(CODES, NEIGHBORS, BASE, SLOT, GAP))


@pytest.mark.parametrize("d", [1, 16, 300])
def test_same_bytes_on_both_paths_and_across_the_threshold(monkeypatch: pytest.MonkeyPatch, d: int) -> None:
    # Codes spread over ten orders of magnitude, so that every rounding of the three float32
    # operations is exercised; one more row than the numpy path takes by default.
    rng = np.random.default_rng(d)
    n, k, m = 500, 5, interpolate_module.SMALL_SIZE // d + 1
    codes = (rng.standard_normal((n, d)) * np.exp(rng.uniform(-11, 11, size=(n, d)))).astype(np.float32)
    neighbors = rng.integers(0, n, size=(n, k))
    base, slot, gap = draws(n, k, m, seed=d)
    expected = naive.interpolate(codes, neighbors, base, slot, gap).tobytes()
    taken: list[str] = []
    numpy_path, numba_path = interpolate_module._interpolate_numpy, interpolate_numba.interpolate_into
    monkeypatch.setattr(interpolate_module, "_interpolate_numpy", lambda *a: taken.append("numpy") or numpy_path(*a))
    monkeypatch.setattr(interpolate_numba, "interpolate_into", lambda *a: taken.append("numba") or numba_path(*a))
    above = interpolate(codes, neighbors, base, slot, gap)
    below = interpolate(codes, neighbors, base[:-1], slot[:-1], gap[:-1])
    monkeypatch.setattr(interpolate_module, "SMALL_SIZE", sys.maxsize)
    numpy_all = interpolate(codes, neighbors, base, slot, gap)
    monkeypatch.setattr(interpolate_module, "SMALL_SIZE", -1)
    numba_all = interpolate(codes, neighbors, base, slot, gap)
    assert taken == ["numba", "numpy", "numpy", "numba"]
    assert above.tobytes() == numpy_all.tobytes() == numba_all.tobytes() == expected
    assert below.tobytes() == numba_all[:-1].tobytes()
