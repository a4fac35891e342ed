"""numba is imported only when a kernel takes its numba path, with the thread count set before."""

from __future__ import annotations

import numba
import pytest
from deepsmote.kernels import set_num_threads
from helpers import run_python


def test_small_work_never_imports_numba_and_large_work_gets_the_threads_set_before() -> None:
    run_python("""
import sys
import numpy as np
import deepsmote.runtime
from deepsmote.kernels import interpolate, kneighbors, set_num_threads
from deepsmote.kernels.interpolate import SMALL_SIZE
from deepsmote.kernels.knn import SMALL_N
assert "numba" not in sys.modules, "importing the runtime imported numba"
set_num_threads(1)
rng = np.random.default_rng(0)
d = 300
codes = rng.standard_normal((SMALL_N, d)).astype(np.float32)
neighbors, _ = kneighbors(codes, 5)
m = SMALL_SIZE // d
interpolate(codes, neighbors, rng.integers(0, SMALL_N, m), rng.integers(0, 5, m), rng.random(m, dtype=np.float32))
assert "numba" not in sys.modules, "small work imported numba"
kneighbors(rng.standard_normal((SMALL_N + 1, 8)).astype(np.float32), 5)
import numba
assert numba.get_num_threads() == 1, numba.get_num_threads()
print("ok")
""")


def test_large_interpolation_also_applies_the_threads_set_before() -> None:
    run_python("""
import numpy as np
from deepsmote.kernels import interpolate, set_num_threads
from deepsmote.kernels.interpolate import SMALL_SIZE
set_num_threads(1)
m = SMALL_SIZE + 1
codes = np.zeros((2, 1), dtype=np.float32)
interpolate(codes, np.array([[1], [0]]), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64),
            np.zeros(m, dtype=np.float32))
import numba
assert numba.get_num_threads() == 1, numba.get_num_threads()
print("ok")
""")


def test_applies_at_once_once_numba_is_loaded() -> None:
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    before = numba.get_num_threads()
    try:
        set_num_threads(1)
        assert numba.get_num_threads() == 1
        set_num_threads(None)
        assert numba.get_num_threads() == 1
        set_num_threads(10**6)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        numba.set_num_threads(before)
