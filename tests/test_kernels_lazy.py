"""numba is imported only when a kernel takes its numba path (or a preload asks), with the threads set before."""

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
from deepsmote.kernels import threads
from deepsmote.kernels.knn import MEDIUM_N, SMALL_N
assert "numba" not in sys.modules, "importing the runtime imported numba"
set_num_threads(1)
assert threads.current() == 1, threads.current()
rng = np.random.default_rng(0)
d = 300
codes = rng.standard_normal((SMALL_N, d)).astype(np.float32)
neighbors, _ = kneighbors(codes, 5)
m = SMALL_SIZE // d
interpolate(codes, neighbors, rng.integers(0, SMALL_N, m), rng.integers(0, 5, m), rng.random(m, dtype=np.float32))
kneighbors(rng.standard_normal((MEDIUM_N, 8)).astype(np.float32), 5)
assert "numba" not in sys.modules, "small work imported numba"
kneighbors(rng.standard_normal((MEDIUM_N + 1, 8)).astype(np.float32), 5)
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


def test_preload_loads_numba_in_the_background_only_for_a_class_that_needs_it() -> None:
    run_python("""
import sys
import numpy as np
from deepsmote.kernels import kneighbors, preload_knn
from deepsmote.kernels.knn import MEDIUM_N
assert preload_knn([3, MEDIUM_N], [100, 10**6]) is None
assert "numba" not in sys.modules, "a class of MEDIUM_N codes loaded numba"
from deepsmote.kernels import finds_rows_on_demand
big = MEDIUM_N + 4
assert finds_rows_on_demand(big, 100) and not finds_rows_on_demand(big, big)
assert preload_knn([3, big], [100, 100]) is None, "a class finding its drawn rows on demand loaded numba"
assert preload_knn([3, big], [100, 0]) is None, "a class that does not grow loaded numba"
assert "numba" not in sys.modules
loader = preload_knn([3, big], [100, big])
assert loader is not None and loader.name == "deepsmote-numba-preload" and not loader.daemon
assert preload_knn([big], [big]) is None, "a second job started a second loader"
loader.join()
from deepsmote.kernels import NeighborRows, knn_cross_numba, knn_numba
# The kernels a job calls first are loaded for the argument types of its real calls: they add no
# new overload. The whole search is not loaded yet: a job reaches it later, if at all.
kernels = {"_sq_norms": knn_numba._sq_norms, "_kneighbors_of": knn_cross_numba._kneighbors_of}
loaded = {name: len(kernel.overloads) for name, kernel in kernels.items()}
assert all(loaded.values()) and not knn_numba._kneighbors.overloads, loaded
codes = np.random.default_rng(0).standard_normal((MEDIUM_N + 1, 8)).astype(np.float32)
NeighborRows(codes, 5, "numba")(np.arange(100))
assert {name: len(kernel.overloads) for name, kernel in kernels.items()} == loaded
print("ok")
""")


def test_no_numba_kernel_runs_beside_the_preload() -> None:
    # The preload's load is held until 0.2 s after the job's k-NN call has started: the kernel must
    # find it finished, not run beside it.
    run_python("""
import threading
import numpy as np
from deepsmote.kernels import kneighbors, preload
from deepsmote.kernels.knn import MEDIUM_N
may_finish, finished = threading.Event(), threading.Event()
preload._load_knn_numba = lambda: may_finish.wait() and finished.set()
assert preload.preload_knn([MEDIUM_N + 1], [MEDIUM_N]) is not None
from deepsmote.kernels import NeighborRows, knn_cross_numba, knn_numba
seen = []
traced_kernels = [(knn_numba, "kneighbors_gemm"), (knn_numba, "sq_norms"), (knn_cross_numba, "kneighbors_of_padded")]
for module, name in traced_kernels:
    kernel = getattr(module, name)
    def traced(*args, kernel=kernel, name=name):
        seen.append((name, finished.is_set()))
        return kernel(*args)
    setattr(module, name, traced)
threading.Timer(0.2, may_finish.set).start()
codes = np.random.default_rng(0).standard_normal((MEDIUM_N + 1, 8)).astype(np.float32)
kneighbors(codes, 5)
NeighborRows(codes, 5, "numba")(np.arange(10))
assert {name for name, _ in seen} == {"kneighbors_gemm", "sq_norms", "kneighbors_of_padded"}, seen
assert all(finished_first for _, finished_first in seen), seen
print("ok")
""")


def size_and_draws(class_sizes, draws) -> list[tuple[int, int]]:
    """What a job passed to `preload_knn`: (codes, most bases drawn) per class."""
    return [(int(n), int(b)) for n, b in zip(class_sizes, draws, strict=True)]


def test_a_fit_on_data_starts_the_preload_with_the_sizes_of_the_classes_that_grow_before_its_sessions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deepsmote.data import fmnist_mini
    from deepsmote.runtime import DeepSMOTE, sampler
    from deepsmote.runtime.stream import open_dataset
    from golden import GOLDEN_BUNDLE

    sizes: list[object] = []
    monkeypatch.setattr(sampler, "preload_knn", lambda sizes_, draws: sizes.append(size_and_draws(sizes_, draws)))
    build = sampler.open_models
    monkeypatch.setattr(sampler, "open_models", lambda *args, **kw: sizes.append("sessions") or build(*args, **kw))
    data = open_dataset(fmnist_mini())
    counts = data.class_counts()
    strategy = {0: int(counts[0]) + 5, 9: int(counts[9]) + 5}
    DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy=strategy, k_neighbors=3, n_threads=1).fit(data)
    assert sizes == [[(int(counts[0]), 5), (int(counts[9]), 5)], "sessions"]


def test_a_job_starts_the_preload_before_it_reads_the_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # numba's load then runs beside the bundle's reading and sessions, which release the GIL.
    from deepsmote.data import fmnist_mini
    from deepsmote.runtime import generate_dataset, job
    from deepsmote.runtime.stream import open_dataset
    from golden import GOLDEN_BUNDLE

    events: list[object] = []
    monkeypatch.setattr(job, "preload_knn", lambda sizes, draws: events.append(size_and_draws(sizes, draws)))
    read_bundle = job.load_bundle
    monkeypatch.setattr(job, "load_bundle", lambda path, **kw: events.append("bundle read") or read_bundle(path, **kw))
    data = open_dataset(fmnist_mini())
    generate_dataset(GOLDEN_BUNDLE, data, tmp_path / "out", sampling_strategy={"0": 402, "1": 202}, progress=False)
    counts = data.class_counts()
    grown = [(int(counts[0]), 402 - int(counts[0])), (int(counts[1]), 202 - int(counts[1]))]
    assert events[:2] == [grown, "bundle read"]
