"""Exact k-NN of a class's codes: deepsmote.kernels.kneighbors against scikit-learn and faiss.

Random normal float32 codes (n, d); every row's k nearest other rows. The baselines run in the
same process, interleaved with ours repeat by repeat: scikit-learn's NearestNeighbors with the
brute algorithm (``kneighbors()`` without X, which leaves each row itself out) and, if installed,
faiss-cpu's IndexFlatL2 (searched for k + 1 and its first column dropped; faiss is a benchmark
baseline only, never a dependency). Medians over the repeats, and their ratios, are printed, and
our indices are checked against scikit-learn's: rows where they differ must be near-ties, whose
exact (float64) distances agree to float32 rounding.

With ``--bases M``, each size also times what a job drawing M bases uniformly from the class does
with `NeighborRows`, the drawn bases alone (a fresh search each repeat, so no row is found twice),
beside the whole search in the same repeats: in numpy, where `finds_rows_on_demand` says so since
0.7.0 (the figures its cost model rests on), and in numba, as a class above MEDIUM_N codes that
draws more does since 0.8.0.

    .venv/bin/python benchmarks/knn.py --sizes 1000 5000 20000 [--bases 100 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
from deepsmote.kernels import NeighborRows, kneighbors
from deepsmote.kernels.knn import MEDIUM_N
from sklearn.neighbors import NearestNeighbors

try:
    import faiss
except ImportError:
    faiss = None


def ours(codes: np.ndarray, k: int) -> np.ndarray:
    return kneighbors(codes, k)[0]


def sklearn_brute(codes: np.ndarray, k: int) -> np.ndarray:
    return NearestNeighbors(n_neighbors=k, algorithm="brute").fit(codes).kneighbors(return_distance=False)


def faiss_flat(codes: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatL2(codes.shape[1])
    index.add(codes)
    return index.search(codes, k + 1)[1][:, 1:]


def timed(fn: Callable[[np.ndarray, int], np.ndarray], codes: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    indices = fn(codes, k)
    return time.perf_counter() - began, indices


def near_tie_check(codes: np.ndarray, ours_idx: np.ndarray, ref_idx: np.ndarray) -> tuple[int, float]:
    """Rows where the index lists differ, and the largest relative difference of their exact distances."""
    rows = np.flatnonzero((ours_idx != ref_idx).any(axis=1))
    worst = 0.0
    x = codes.astype(np.float64)
    for i in rows:
        d_ours = ((x[ours_idx[i]] - x[i]) ** 2).sum(axis=1)
        d_ref = ((x[ref_idx[i]] - x[i]) ** 2).sum(axis=1)
        worst = max(worst, float(np.max(np.abs(d_ours - d_ref) / d_ref)))
    return len(rows), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="repeats per size (3 above 10,000 codes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bases", type=int, nargs="*", default=[], help="also time the neighbours of M drawn bases")
    args = parser.parse_args()

    contenders: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"ours": ours, "sklearn": sklearn_brute}
    if faiss is not None:
        contenders["faiss"] = faiss_flat
    rng = np.random.default_rng(args.seed)
    warm = rng.standard_normal((64, args.dim), dtype=np.float32)
    for fn in contenders.values():
        fn(warm, args.k)
    print(
        f"{os.cpu_count()} CPUs, numba {numba.__version__} with {numba.get_num_threads()} threads "
        f"({numba.threading_layer()} layer), faiss {faiss.__version__ if faiss is not None else 'not installed'}; "
        f"d={args.dim}, k={args.k}, medians of {args.repeats} repeats (3 above 10,000 codes)"
    )

    header = f"{'n':>7} " + " ".join(f"{name + ' s':>11}" for name in contenders)
    header += " " + " ".join(f"{'ours/' + name:>13}" for name in contenders if name != "ours")
    print(header)
    for n in args.sizes:
        codes = rng.standard_normal((n, args.dim), dtype=np.float32)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        results: dict[str, np.ndarray] = {}
        for _ in range(args.repeats if n <= 10_000 else min(args.repeats, 3)):
            for name, fn in contenders.items():
                seconds, results[name] = timed(fn, codes, args.k)
                times[name].append(seconds)
        med = {name: statistics.median(values) for name, values in times.items()}
        line = f"{n:>7} " + " ".join(f"{med[name]:>11.4f}" for name in contenders)
        line += " " + " ".join(f"{med['ours'] / med[name]:>12.2f}x" for name in contenders if name != "ours")
        print(line)
        rows, gap = near_tie_check(codes, results["ours"], results["sklearn"])
        if rows:
            print(f"        indices differ from sklearn's in {rows}/{n} rows; exact distances there within {gap:.1e}")
        else:
            print(f"        indices equal to sklearn's in all {n} rows")
        for m in args.bases:
            bases = rng.integers(0, n, m)
            for kernel in ("numpy", "numba"):
                rows_times = []
                for _ in range(args.repeats):
                    began = time.perf_counter()
                    table = NeighborRows(codes, args.k, kernel)(bases)
                    rows_times.append(time.perf_counter() - began)
                if kernel == "numba" and n > MEDIUM_N:
                    same = table[bases].tobytes() == results["ours"][bases].tobytes()
                    assert same, "the numba rows differ from the whole search"
                rows_s = statistics.median(rows_times)
                print(
                    f"        {m} drawn bases ({len(np.unique(bases))} distinct), their rows only, {kernel}: "
                    f"{rows_s:.4f} s = {rows_s / med['ours']:.2f}x the whole search"
                )


if __name__ == "__main__":
    main()
