"""SMOTE interpolation throughput: deepsmote.kernels.interpolate against a gather-copy of the same rows.

Writes m interpolated codes of dimension d (float32) from a class of n codes with k neighbours
each, the draws made with a numpy Generator as the runtime makes them. Row r of the kernel's
output reads row ``base[r]`` of the (n, d) codes and one neighbour row, and numba's threads split
the m rows into contiguous ranges. The baseline moves the same data on the same threads: it
writes the same (m, d) float32 output, row r being ``codes[base[r]]`` gathered by ``np.take`` (no
arithmetic), the rows split into as many contiguous ranges, each on its own Python thread
(``np.take`` releases the GIL). It reads one gathered row where the kernel reads two, both from
the same table, which stays in cache at the default sizes (6 MB): the memory traffic of both is
the output (1.2 GB). The kernel runs on each ``--threads`` count against a baseline on as many
threads (1 against 1, N against N), into a reused buffer (``out=``) and into a fresh array, whose
first-touch page faults the baseline then takes on the same threads. Throughput is GB/s of
output written, medians of the repeats; the kernel and its baseline run back to back in each
repeat, and the share quoted is the median of those pairs' ratios.

    .venv/bin/python benchmarks/interpolate.py --rows 1000000 [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from deepsmote.kernels import interpolate, set_num_threads
from deepsmote.kernels.interpolate import SMALL_SIZE


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of ``fn``, in seconds."""
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def gather_copy(pool: ThreadPoolExecutor, threads: int, codes: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = codes[rows[r]]``, the rows split into ``threads`` contiguous ranges run on ``pool``."""
    bounds = np.linspace(0, len(rows), threads + 1).astype(int)

    def copy(lo: int, hi: int) -> None:
        # mode="clip": with the default "raise", np.take buffers the whole output before writing it.
        np.take(codes, rows[lo:hi], axis=0, out=out[lo:hi], mode="clip")

    # list() re-raises the first error of any range.
    list(pool.map(copy, bounds[:-1], bounds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="m, output rows")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--codes", type=int, default=5000, help="n, codes in the class")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if max(args.threads) > numba.config.NUMBA_NUM_THREADS or min(args.threads) < 1:
        # numba caps a larger count silently, which would leave the baseline with more threads.
        parser.error(f"--threads must be in [1, {numba.config.NUMBA_NUM_THREADS}] (numba's pool)")
    if args.rows * args.dim <= SMALL_SIZE:
        # Such outputs take the kernel's one-thread numpy path, not the numba kernel measured here.
        parser.error(f"--rows x --dim must be above {SMALL_SIZE:,} values, where the numba kernel runs")

    rng = np.random.default_rng(args.seed)
    codes = rng.standard_normal((args.codes, args.dim), dtype=np.float32)
    neighbors = rng.integers(0, args.codes, size=(args.codes, args.k))
    base = rng.integers(0, args.codes, size=args.rows)
    slot = rng.integers(0, args.k, size=args.rows)
    gap = rng.random(args.rows, dtype=np.float32)
    out = np.empty((args.rows, args.dim), dtype=np.float32)
    copied = np.empty_like(out)
    gigabytes = out.nbytes / 1e9

    interpolate(codes, neighbors, base, slot, gap, out=out)
    z_base = codes[base]
    reference = z_base + gap[:, None] * (codes[neighbors[base, slot]] - z_base)
    assert np.array_equal(out, reference), "kernel and numpy disagree"
    del reference
    pool = ThreadPoolExecutor(max(args.threads))
    gather_copy(pool, max(args.threads), codes, base, copied)
    assert np.array_equal(copied, z_base), "gather-copy and numpy disagree"
    del z_base

    def kernel(threads: int, target: np.ndarray | None) -> Callable[[], object]:
        def run() -> object:
            set_num_threads(threads)
            return interpolate(codes, neighbors, base, slot, gap, out=target)

        return run

    def baseline(threads: int, fresh: bool) -> Callable[[], object]:
        return lambda: gather_copy(pool, threads, codes, base, np.empty_like(out) if fresh else copied)

    cases: dict[tuple[int, str], Callable[[], object]] = {}
    for t in args.threads:
        cases[t, "interpolate (out=)"] = kernel(t, out)
        cases[t, "np.take gather (out=)"] = baseline(t, fresh=False)
        cases[t, "interpolate (new array)"] = kernel(t, None)
        cases[t, "np.take gather (new array)"] = baseline(t, fresh=True)
    for fn in cases.values():  # warm-up: numba's threads and the kernel's compile or cache load
        fn()
    times: dict[tuple[int, str], list[float]] = {key: [] for key in cases}
    for _ in range(args.repeats):
        for key, fn in cases.items():
            times[key].append(seconds(fn))
    median = {key: statistics.median(values) for key, values in times.items()}

    print(
        f"m={args.rows:,} rows x d={args.dim} float32 ({gigabytes:.2f} GB written), n={args.codes} codes "
        f"({codes.nbytes / 1e6:.1f} MB), k={args.k}; medians of {args.repeats} repeats (range in brackets)"
    )
    for (t, name), values in times.items():
        print(
            f"  {t} thread{'s' if t > 1 else ' '} {name:<27} {median[t, name] * 1e3:8.1f} ms "
            f"({min(values) * 1e3:.1f}-{max(values) * 1e3:.1f})  {gigabytes / median[t, name]:6.2f} GB/s"
        )
    for t in args.threads:
        shares = []
        for kind in ("out=", "new array"):
            # Each repeat times the kernel and its baseline back to back: the ratio of that pair
            # cancels most of this machine's drift, and its median is the figure quoted.
            ratio = np.array(times[t, f"np.take gather ({kind})"]) / np.array(times[t, f"interpolate ({kind})"])
            shares.append(f"{kind} {np.median(ratio):.0%} ({ratio.min():.0%}-{ratio.max():.0%})")
        plural = "s" if t > 1 else ""
        print(f"  {t} thread{plural}: interpolate's rate / the gather-copy's, median of pairs: " + ", ".join(shares))


if __name__ == "__main__":
    main()
